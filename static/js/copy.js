// A button with data-copy="#selector" copies that field's value and says so.
document.querySelectorAll("[data-copy]").forEach(function (button) {
  button.addEventListener("click", function () {
    const field = document.querySelector(button.dataset.copy);
    const status = document.querySelector("[data-copy-status]");
    const done = function () { if (status) status.textContent = "Link copied."; };
    field.select();
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(field.value).then(done, function () { document.execCommand("copy"); done(); });
    } else {
      document.execCommand("copy");
      done();
    }
  });
});
