// A visual-analogue item is a typed number (what is submitted) with a slider beside it for
// touch screens; moving either one updates the other.
document.querySelectorAll("input[data-vas]").forEach(function (number) {
  const slider = document.createElement("input");
  slider.type = "range";
  slider.className = "form-range mb-1";
  slider.min = number.min;
  slider.max = number.max;
  slider.step = number.step;
  slider.value = number.value || number.min;
  slider.setAttribute("aria-label", (number.labels[0] ? number.labels[0].textContent : "") + " (slider)");
  slider.tabIndex = -1; // keyboard users type the number; the slider is for touch
  number.parentNode.insertBefore(slider, number);
  slider.addEventListener("input", function () { number.value = slider.value; });
  number.addEventListener("input", function () { if (number.value !== "") slider.value = number.value; });
});
