// The patient's page shows one questionnaire at a time ("2 of 3") with Back and Next; the
// answers of every step stay in the one form and are sent together at the end. Without
// JavaScript all questionnaires show at once. After a submit the server found incomplete, the
// first step with a message opens and focus moves to its first missing answer.
(function () {
  const form = document.querySelector("form[data-stepper]");
  if (!form) return;
  const steps = Array.from(form.querySelectorAll(".questionnaire"));
  const send = form.querySelector("[data-stepper-send]");
  if (steps.length < 2) return;
  const progress = document.createElement("p");
  progress.className = "h6 text-body-secondary stepper-progress";
  progress.setAttribute("aria-live", "polite");
  progress.tabIndex = -1;
  form.insertBefore(progress, steps[0]);
  const nav = document.createElement("div");
  nav.className = "d-flex gap-2 mt-3";
  const back = document.createElement("button");
  back.type = "button";
  back.className = "btn btn-outline-secondary btn-lg flex-fill";
  back.textContent = "Back";
  const next = document.createElement("button");
  next.type = "button";
  next.className = "btn btn-primary btn-lg flex-fill";
  next.textContent = "Next";
  nav.append(back, next);
  form.insertBefore(nav, send);
  let current = 0;

  function show(index, focusTarget) {
    current = index;
    steps.forEach(function (step, n) { step.hidden = n !== index; });
    progress.textContent = "Questionnaire " + (index + 1) + " of " + steps.length;
    back.hidden = index === 0;
    next.hidden = index === steps.length - 1;
    send.hidden = index !== steps.length - 1;
    (focusTarget || progress).focus();
    if (!focusTarget) progress.scrollIntoView({ block: "start" });
  }

  // The first unanswered question of a step the server sent back with a message.
  function firstMissing(step) {
    if (!step.querySelector(".is-invalid, .invalid-feedback, .alert-danger, .alert-block")) return null;
    const inputs = step.querySelectorAll("input:not([type=hidden]):not([type=range])");
    for (const input of inputs) {
      if (input.type === "radio") {
        if (!form.querySelector("input[name='" + input.name + "']:checked")) return input;
      } else if (input.value === "") {
        return input;
      }
    }
    return step.querySelector(".is-invalid") || inputs[0] || null;
  }

  back.addEventListener("click", function () { show(current - 1); });
  next.addEventListener("click", function () { show(current + 1); });
  const withError = steps.findIndex(function (step) { return firstMissing(step) !== null; });
  if (withError >= 0) {
    show(withError, firstMissing(steps[withError]));
  } else {
    show(0);
    window.scrollTo(0, 0);
  }
})();
