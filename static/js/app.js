// Forms marked data-submit-once disable their buttons after the first submit, so a double
// click sends one request. The server stays the real guard against duplicates.
document.addEventListener("submit", function (event) {
  const form = event.target;
  if (!form.matches("[data-submit-once]")) return;
  if (form.dataset.submitted === "true") {
    event.preventDefault();
    return;
  }
  form.dataset.submitted = "true";
  form.querySelectorAll("button[type=submit], input[type=submit]").forEach(function (button) {
    button.setAttribute("aria-disabled", "true");
    button.classList.add("disabled");
  });
});

// A button marked data-print prints the page (the monitoring summary); no inline script.
document.addEventListener("click", function (event) {
  if (event.target.closest("[data-print]")) window.print();
});
