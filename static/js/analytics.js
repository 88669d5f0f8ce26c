// Cohort analytics: choosing a cell draws its scatter plot (one point per patient).
(function () {
  "use strict";
  const source = document.getElementById("cohort-scatter");
  const chart = document.getElementById("scatter-chart");
  if (!source || !chart) return;
  const cells = JSON.parse(source.textContent);
  const summary = document.getElementById("scatter-summary");

  function show(id) {
    const cell = cells[id];
    if (!cell) return;
    document.querySelectorAll("button[data-cell]").forEach(function (button) {
      button.setAttribute("aria-pressed", button.dataset.cell === id ? "true" : "false");
    });
    summary.textContent = cell.xTitle + " against " + cell.yTitle + ": " + cell.summary;
    const trace = {
      x: cell.x,
      y: cell.y,
      text: cell.labels,
      mode: "markers",
      type: "scatter",
      marker: { size: 10, color: "#0d6efd", opacity: 0.75 },
      hovertemplate: "%{text}<br>%{x:.2f}, %{y:.2f}<extra></extra>",
    };
    const layout = {
      margin: { l: 60, r: 20, t: 20, b: 50 },
      xaxis: { title: { text: cell.xTitle }, zeroline: false },
      yaxis: { title: { text: cell.yTitle }, zeroline: false },
      font: { size: 13 },
      height: 380,
    };
    chart.dataset.rendered = "pending";
    window.Plotly.react(chart, [trace], layout, window.RapportCharts.config).then(function () {
      chart.dataset.rendered = "true";
      chart.dataset.shownCell = id;
    });
  }

  if (chart.dataset.defaultCell) show(chart.dataset.defaultCell);

  document.addEventListener("click", function (event) {
    const button = event.target.closest("button[data-cell]");
    if (!button) return;
    show(button.dataset.cell);
    document.getElementById("scatter").focus({ preventScroll: false });
  });
})();
