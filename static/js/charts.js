// Draws Plotly charts described by data in <script type="application/json"> blocks
// (no inline scripts, so the page works under a strict Content-Security-Policy).
(function () {
  "use strict";
  const layoutBase = {
    margin: { l: 60, r: 10, t: 10, b: 60 },
    paper_bgcolor: "rgba(0,0,0,0)",
    plot_bgcolor: "rgba(0,0,0,0)",
    font: { family: "system-ui, sans-serif", size: 13 },
    legend: { orientation: "h", y: -0.25 },
  };
  const builders = {
    "host-memory": function (data) {
      return {
        traces: [
          { type: "bar", name: "used MiB", x: data.hosts, y: data.used, marker: { color: "#d9822b" } },
          { type: "bar", name: "free MiB", x: data.hosts, y: data.free, marker: { color: "#3c8d5a" } },
        ],
        layout: { barmode: "stack", yaxis: { title: { text: "MiB" } } },
      };
    },
  };
  window.FerryCharts = { builders: builders, layoutBase: layoutBase };
  function draw(el) {
    const build = builders[el.dataset.chart];
    const source = document.getElementById(el.dataset.source);
    if (!build || !source || typeof Plotly === "undefined") return;
    const spec = build(JSON.parse(source.textContent));
    Plotly.newPlot(el, spec.traces, Object.assign({}, layoutBase, spec.layout),
      { displaylogo: false, responsive: true });
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-chart]").forEach(draw);
  });
})();
