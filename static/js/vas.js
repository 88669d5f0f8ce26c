// A visual-analogue item is a typed number (what is submitted) with a slider beside it for
// touch screens; moving either one updates the other. Until the item is answered the slider
// has no handle at all (it starts unset, not mid-scale), so an untouched slider is never
// mistaken for an answer.
document.querySelectorAll("input[data-vas]").forEach(function (number) {
  const slider = document.createElement("input");
  slider.type = "range";
  slider.className = "form-range mb-1";
  slider.min = number.min;
  slider.max = number.max;
  slider.step = number.step;
  const unset = function () {
    slider.classList.toggle("vas-unset", number.value === "");
  };
  slider.value = number.value !== "" ? number.value : (Number(number.min) + Number(number.max)) / 2;
  unset();
  slider.setAttribute("aria-label", (number.labels[0] ? number.labels[0].textContent.trim() : "") + " (slider)");
  slider.tabIndex = -1; // keyboard users type the number; the slider is for touch
  number.parentNode.insertBefore(slider, number);
  slider.addEventListener("input", function () { number.value = slider.value; unset(); });
  // A tap on the handle where it already sits is an answer too (no "input" event fires).
  slider.addEventListener("pointerup", function () {
    if (number.value === "") { number.value = slider.value; unset(); }
  });
  number.addEventListener("input", function () {
    if (number.value !== "") slider.value = number.value;
    unset();
  });
});
