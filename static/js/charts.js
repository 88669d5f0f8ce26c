// Draws every figure embedded as <script type="application/json"> next to a .js-chart div.
// No inline script: the page's CSP allows only our own files.
(function () {
  "use strict";
  const config = { responsive: true, displaylogo: false, displayModeBar: false };

  function draw(element) {
    const source = document.getElementById(element.dataset.figure);
    if (!source) return Promise.resolve();
    const figure = JSON.parse(source.textContent);
    element.dataset.rendered = "pending";
    return window.Plotly.newPlot(element, figure.data, figure.layout, config).then(function () {
      element.dataset.rendered = "true";
    });
  }

  function drawAll(root) {
    return Promise.all(Array.from(root.querySelectorAll(".js-chart")).map(draw));
  }

  // The dashboard's "Show follow-ups" switch: the charts that share a date range move to the
  // whole of it, or back to the treatment period, together.
  function showSpan(wholeSpan) {
    document.querySelectorAll(".js-chart[data-span-all]").forEach(function (element) {
      if (!element.layout) return;
      const range = (wholeSpan ? element.dataset.spanAll : element.dataset.spanTreatment).split("|");
      const update = {};
      Object.keys(element.layout).filter(function (key) { return key.indexOf("xaxis") === 0; })
        .forEach(function (key) { update[key + ".range"] = range.slice(); });
      window.Plotly.relayout(element, update);
    });
  }

  window.RapportCharts = { draw: draw, drawAll: drawAll, config: config };
  document.addEventListener("DOMContentLoaded", function () {
    drawAll(document);
    const spanSwitch = document.querySelector("[data-span-switch]");
    if (spanSwitch) {
      spanSwitch.addEventListener("change", function () { showSpan(spanSwitch.checked); });
    }
  });
})();
