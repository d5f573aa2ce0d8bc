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
  // Plotly reads <a href>, <b>, <span style> and entities in labels as markup. Labels here
  // are names people and hypervisors chose (plans, VMs, hosts): shown as text, never markup.
  function plain(text) {
    return String(text === null || text === undefined ? "" : text)
      .replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  }
  const builders = {
    "host-memory": function (data) {
      return {
        traces: [
          { type: "bar", name: "used MiB", x: data.hosts.map(plain), y: data.used, marker: { color: "#d9822b" } },
          { type: "bar", name: "free MiB", x: data.hosts.map(plain), y: data.free, marker: { color: "#3c8d5a" } },
        ],
        layout: { barmode: "stack", yaxis: { title: { text: "MiB" } } },
      };
    },
    // The plan timeline: one horizontal bar per item from its estimated start to its end
    // (seconds from the plan's start, shown in minutes), coloured by how it converges.
    "host-capacity": function (data) {
      return {
        traces: [
          { type: "bar", name: "used MiB", x: data.bars.map(function (b) { return plain(b.label); }),
            y: data.bars.map(function (b) { return b.used; }),
            marker: { color: data.bars.map(function (b) { return b.used > data.total ? "#c0392b" : "#1f5fae"; }) } },
        ],
        layout: {
          height: 300,
          yaxis: { title: { text: "MiB" }, rangemode: "tozero" },
          shapes: data.total ? [{ type: "line", xref: "paper", x0: 0, x1: 1, y0: data.total, y1: data.total,
            line: { color: "#c0392b", dash: "dash" } }] : [],
          annotations: data.total ? [{ xref: "paper", x: 1, y: data.total, text: "total " + data.total + " MiB",
            showarrow: false, xanchor: "right", yanchor: "bottom" }] : [],
        },
      };
    },
    "plan-gantt": function (data) {
      const colours = {
        "pre-copy": "#3c8d5a", auto_converge: "#d9822b", raise_downtime: "#d9822b",
        postcopy: "#7a4fbf", "does not converge": "#c0392b",
      };
      const groups = {};
      data.items.forEach(function (item) {
        const key = item.converges_by;
        groups[key] = groups[key] || { x: [], base: [], y: [], text: [] };
        const vm = plain(item.vm);
        groups[key].base.push(item.start_s / 60);
        groups[key].x.push(Math.max((item.end_s - item.start_s) / 60, 0.05));
        groups[key].y.push(vm);
        groups[key].text.push(vm + " → " + plain(item.destination || "?") + ": " +
          Math.round(item.start_s) + "–" + Math.round(item.end_s) + " s");
      });
      const traces = Object.keys(groups).map(function (key) {
        const g = groups[key];
        return { type: "bar", orientation: "h", name: plain(key), x: g.x, base: g.base, y: g.y,
          hovertext: g.text, hoverinfo: "text", marker: { color: colours[key] || "#1f5fae" } };
      });
      // What really happened (latest run), as thin dark bars over the estimate.
      if (data.actual && data.actual.length) {
        const actual = { type: "bar", orientation: "h", name: "actual", x: [], base: [], y: [], hovertext: [],
          hoverinfo: "text", width: 0.3, marker: { color: "#14213d" } };
        data.actual.forEach(function (a) {
          const end = a.end_s === null ? Math.max(a.start_s + 1, (data.elapsed_s || a.start_s + 1)) : a.end_s;
          actual.base.push(a.start_s / 60);
          actual.x.push(Math.max((end - a.start_s) / 60, 0.02));
          actual.y.push(plain(a.vm));
          actual.hovertext.push(plain(a.vm) + " actual: " + Math.round(a.start_s) + "–" + Math.round(end) + " s, " + plain(a.status) +
            (a.downtime_ms !== null && a.downtime_ms !== undefined ? ", downtime " + a.downtime_ms + " ms" : ""));
        });
        traces.push(actual);
      }
      const shapes = data.window_s ? [{ type: "line", x0: data.window_s / 60, x1: data.window_s / 60,
        yref: "paper", y0: 0, y1: 1, line: { color: "#c0392b", dash: "dash" } }] : [];
      return {
        traces: traces,
        layout: {
          barmode: "overlay", shapes: shapes, height: Math.max(260, 22 * data.items.length + 120),
          margin: { l: 130, r: 10, t: 10, b: 60 },
          xaxis: { title: { text: "minutes from plan start" }, rangemode: "tozero" },
          yaxis: { autorange: "reversed", automargin: true },
        },
      };
    },
  };
  window.FerryCharts = { builders: builders, layoutBase: layoutBase, plain: plain };
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
