// Cohort analytics: choosing a cell draws its scatter plot (one point per patient).
// The page embeds no points: each cell's, the first one shown included, are fetched when
// chosen, with the page's own filters, so the page does not grow with the cohort.
(function () {
  "use strict";
  const chart = document.getElementById("scatter-chart");
  if (!chart) return;
  const cells = {};
  const summary = document.getElementById("scatter-summary");

  // Patients with the same pair of values would hide behind one another: spread ties
  // sideways in steps of an eightieth of the x range, the same way on every draw.
  // Only the drawing moves; the hover text and the statistics use the exact values.
  function jittered(xs, ys) {
    const range = Math.max.apply(null, xs) - Math.min.apply(null, xs) || 1;
    const seen = {};
    return xs.map(function (x, i) {
      const key = x + "," + ys[i];
      const n = (seen[key] = (seen[key] || 0) + 1) - 1;
      if (n === 0) return x;
      const side = n % 2 ? 1 : -1;
      return x + side * Math.ceil(n / 2) * range / 80;
    });
  }

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
      x: jittered(cell.x, cell.y),
      y: cell.y,
      text: cell.labels,
      mode: "markers",
      type: "scatter",
      marker: { size: 10, color: "#0d6efd", opacity: 0.75 },
      customdata: cell.x,
      hovertemplate: "%{text}<br>%{customdata:.2f}, %{y:.2f}<extra></extra>",
    };
    const layout = {
      margin: { l: 60, r: 20, t: 20, b: 50 },
      xaxis: { title: { text: cell.xTitle }, zeroline: false },
      yaxis: { title: { text: cell.yTitle }, zeroline: false },
      font: { size: 13 },
      height: 380,
      showlegend: false,
    };
    const traces = [trace];
    if (cell.fit) {
      traces.push({
        x: cell.fit.x,
        y: cell.fit.y,
        mode: "lines",
        type: "scatter",
        name: "Least-squares line",
        line: { color: "#212529", width: 2, dash: "dash" },
        hoverinfo: "skip",
      });
    }
    return window.Plotly.react(chart, traces, layout, window.RapportCharts.config).then(
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
