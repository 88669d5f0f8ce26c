// Kiosk mode: the tablet goes to the locked screen after the idle limit without a touch or a
// key. While the patient is busy, a request each minute tells the server they are still there
// (its idle clock restarts with every request to the kiosk page), so an answer typed slowly is
// not refused as idle.
(function () {
  "use strict";
  const root = document.querySelector("[data-kiosk-idle]");
  if (!root) return;
  const idleMs = Number(root.dataset.kioskIdle) * 1000;
  const pingEveryMs = 60 * 1000;
  let timer = null;
  let lastPing = Date.now();

  function arm() {
    clearTimeout(timer);
    timer = setTimeout(function () {
      window.location.assign(root.dataset.kioskLocked);
    }, idleMs);
  }

  function activity() {
    arm();
    if (Date.now() - lastPing >= pingEveryMs) {
      lastPing = Date.now();
      fetch(root.dataset.kioskPing, { credentials: "same-origin", cache: "no-store" }).catch(
        function () {}
      );
    }
  }

  ["pointerdown", "keydown", "input"].forEach(function (name) {
    document.addEventListener(name, activity, { passive: true });
  });
  arm();
})();
