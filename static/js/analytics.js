// Cohort analytics: choosing a cell draws its scatter plot (one point per patient).
// The page embeds only the chosen cell's points; another cell's are fetched when chosen,
// with the page's own filters, so the page does not carry every cell times every patient.
(function () {
  "use strict";
  const source = document.getElementById("cohort-scatter");
  const chart = document.getElementById("scatter-chart");
  if (!source || !chart) return;
  const cells = JSON.parse(source.textContent);
  const summary = document.getElementById("scatter-summary");

  function load(id) {
    if (cells[id]) return Promise.resolve(cells[id]);
    const query = new URLSearchParams(window.location.search);
    query.set("cell", id);
    return fetch(chart.dataset.source + "?" + query.toString(), {
      credentials: "same-origin",
      headers: { Accept: "application/json" },
    }).then(function (response) {
      if (!response.ok) throw new Error("The scatter plot could not be loaded.");
      return response.json().then(function (cell) {
        cells[id] = cell;
        return cell;
      });
    });
  }

  function draw(id, cell) {
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
    return window.Plotly.react(chart, [trace], layout, window.RapportCharts.config).then(
      function () {
        chart.dataset.rendered = "true";
        chart.dataset.shownCell = id;
      },
    );
  }

  function show(id) {
    document.querySelectorAll("button[data-cell]").forEach(function (button) {
      button.setAttribute("aria-pressed", button.dataset.cell === id ? "true" : "false");
    });
    chart.dataset.rendered = "pending";
    load(id)
      .then(function (cell) {
        return draw(id, cell);
      })
      .catch(function (error) {
        summary.textContent = error.message + " Reload the page and choose the cell again.";
        chart.dataset.rendered = "failed";
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
