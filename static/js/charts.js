// Draws every figure embedded as <script type="application/json"> next to a .js-chart div.
// No inline script: the page's CSP allows only our own files.
(function () {
  "use strict";
  const config = { responsive: true, displaylogo: false, displayModeBar: false };

  // On a phone a one-row legend wraps at random and squeezes the plot above it: two short
  // entries a line (long ones one a line) in smaller type, and the figure grows by the
  // legend's rows instead, so the legend never takes the plot's room.
  const PHONE_WIDTH = 576;
  function phoneLayout(element, figure) {
    if (element.clientWidth >= PHONE_WIDTH) return figure.layout;
    const names = figure.data.filter(function (trace) {
      return trace.name && trace.showlegend !== false;
    }).map(function (trace) { return trace.name; });
    // Half the width holds about 18 characters at this size; longer names get a whole line.
    const perRow = names.every(function (name) { return name.length <= 18; }) ? 2 : 1;
    const rows = Math.ceil(names.length / perRow);
    return Object.assign({}, figure.layout, {
      legend: Object.assign({}, figure.layout.legend, {
        orientation: "h",
        font: { size: 11 },
        entrywidth: 1 / perRow,
        entrywidthmode: "fraction",
      }),
      height: (figure.layout.height || 450) + rows * 20,
    });
  }

  function draw(element) {
    const source = document.getElementById(element.dataset.figure);
    if (!source) return Promise.resolve();
    const figure = JSON.parse(source.textContent);
    element.dataset.rendered = "pending";
    const layout = phoneLayout(element, figure);
    return window.Plotly.newPlot(element, figure.data, layout, config).then(function () {
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
