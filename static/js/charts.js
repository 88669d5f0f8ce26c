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

  window.RapportCharts = { draw: draw, drawAll: drawAll, config: config };
  document.addEventListener("DOMContentLoaded", function () {
    drawAll(document);
  });
})();
