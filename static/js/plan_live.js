// Live progress of one plan: items with phase chips and progress bars, a per-item chart
// (memory remaining, transfer rate, dirty rate; the downtime marked), the connection state.
// Reads its configuration from data-* attributes; no inline scripts (strict CSP).
(function () {
  "use strict";
  var PHASES = ["queued", "preflight", "prepare", "transfer", "converge", "switchover", "verify", "cleanup", "done"];
  var MIB = 1024 * 1024;

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === "text") node.textContent = attrs[k]; else node.setAttribute(k, attrs[k]);
    });
    (children || []).forEach(function (c) { node.appendChild(c); });
    return node;
  }

  function pct(done, total) {
    if (!total) return 0;
    return Math.max(0, Math.min(100, Math.round((100 * done) / total)));
  }

  function fmtEta(seconds) {
    if (seconds === null || seconds === undefined || !isFinite(seconds)) return "";
    if (seconds < 90) return Math.round(seconds) + " s";
    return Math.round(seconds / 60) + " min";
  }

  function PlanLive(root) {
    this.root = root;
    this.planId = root.dataset.planId;
    this.token = root.dataset.token || "";
    this.tbody = root.querySelector("[data-items]");
    this.stateEl = root.querySelector("[data-live-state]");
    this.planStatusEl = root.querySelector("[data-plan-status]");
    this.chartEl = root.querySelector("[data-item-chart]");
    this.chartItem = null;
    this.series = {};   // item id -> {t:[], remaining:[], rate:[], dirty:[], downtime: null}
    this.rows = {};
    this.drawn = 0;     // events drawn, for tests and the latency benchmark
    this.seqs = [];     // sequence numbers applied after the first snapshot (tests check them)
    this.firstSeq = null;
  }

  PlanLive.prototype.start = function () {
    var self = this;
    var ws = this.token ? "/ws/status/" + this.token + "/" : "/ws/plans/" + this.planId + "/";
    var snap = this.token ? "/status/" + this.token + "/snapshot/" : "/api/v1/live/plans/" + this.planId + "/";
    this.live = new window.FerryLive({
      wsPath: ws,
      snapshotUrl: snap,
      eventsUrl: this.token ? null : function (run, after) { return "/api/v1/runs/" + run + "/events/?after=" + after + "&limit=500"; },
      onSnapshot: function (s) { self.render(s); },
      onEvent: function (e) { self.event(e); },
      onState: function (st) { self.showState(st); },
    });
    this.live.start();
  };

  PlanLive.prototype.showState = function (state) {
    if (!this.stateEl) return;
    var labels = { live: "live", reconnecting: "reconnecting…", polling: "offline (polling)", closed: "link closed", forbidden: "not allowed", connecting: "connecting…" };
    this.stateEl.textContent = labels[state] || state;
    this.stateEl.className = "live-state live-" + state;
    this.root.dataset.liveState = state;
  };

  PlanLive.prototype.render = function (snap) {
    var self = this;
    if (this.planStatusEl && snap.plan) {
      this.planStatusEl.textContent = snap.plan.status.replace("_", " ");
      this.planStatusEl.className = "plan-status status-" + snap.plan.status;
    }
    (snap.items || []).forEach(function (item) { self.renderItem(item); });
    this.renderSummary(snap);
    this.root.dataset.lastSeq = snap.last_seq || 0;
    if (this.firstSeq === null && snap.run) { this.firstSeq = snap.last_seq || 0; this.root.dataset.firstSeq = this.firstSeq; }
    if (!this.chartItem && snap.items && snap.items.length) {
      var running = snap.items.filter(function (i) { return i.status === "running"; })[0];
      this.chartItem = String((running || snap.items[0]).id);
    }
    this.drawChart();
  };

  // Status pages: "N of M VMs finished", one bar, the outcome and the estimated finish.
  PlanLive.prototype.renderSummary = function (snap) {
    var text = this.root.querySelector("[data-summary-text]");
    if (!text) return;
    var items = snap.items || [];
    var done = items.filter(function (i) { return i.status === "completed"; }).length;
    var failed = items.filter(function (i) { return ["failed", "cancelled", "needs_attention", "rolled_back"].indexOf(i.status) >= 0; }).length;
    text.textContent = done + " of " + items.length + " VMs finished" + (failed ? ", " + failed + " failed" : "") + ".";
    var bar = this.root.querySelector("[data-summary-bar]");
    if (bar) bar.style.width = (items.length ? Math.round((100 * (done + failed)) / items.length) : 0) + "%";
    var eta = this.root.querySelector("[data-eta]");
    if (eta && snap.eta) eta.textContent = "Estimated finish: " + snap.eta.replace("T", " ").slice(0, 16) + " UTC";
    if (eta && ["completed", "failed", "partially_completed", "cancelled"].indexOf(snap.plan.status) >= 0) {
      eta.textContent = "Finished: " + snap.plan.status.replace("_", " ") + ".";
    }
  };

  PlanLive.prototype.renderItem = function (item) {
    var row = this.rows[item.id];
    if (!row) {
      // Reuse the row the server rendered (pages work without scripts), else add one.
      row = (this.tbody && this.tbody.querySelector('tr[data-item-id="' + item.id + '"]')) || el("tr", { "data-item-id": item.id });
      this.rows[item.id] = row;
      if (this.tbody && !row.parentNode) this.tbody.appendChild(row);
      var self = this;
      row.addEventListener("click", function () { self.chartItem = String(item.id); self.drawChart(); });
    }
    var attempt = item.attempt || {};
    var phase = attempt.phase || (item.status === "completed" ? "done" : "queued");
    var sample = item.sample || {};
    var memPct = item.status === "completed" ? 100 : pct(sample.memory_processed, sample.memory_total);
    var diskPct = sample.disk_total ? pct(sample.disk_processed, sample.disk_total) : null;
    var chips = el("div", { class: "phases" }, PHASES.slice(1, 8).map(function (p) {
      var idx = PHASES.indexOf(p), cur = PHASES.indexOf(phase);
      var cls = idx < cur || phase === "done" ? "chip done" : (idx === cur ? "chip current" : "chip");
      if (idx === cur && (item.status === "failed" || item.status === "needs_attention")) cls = "chip failed";
      return el("span", { class: cls, text: p });
    }));
    var bars = el("div", { class: "bars" }, [
      el("div", { class: "bar", title: "memory " + memPct + "%" }, [el("span", { style: "width:" + memPct + "%" })]),
    ]);
    if (diskPct !== null) bars.appendChild(el("div", { class: "bar disk", title: "disk " + diskPct + "%" }, [el("span", { style: "width:" + diskPct + "%" })]));
    var eta = "";
    if (sample.memory_remaining && sample.transfer_bps) {
      var net = sample.transfer_bps - (sample.dirty_rate_bps || 0);
      eta = net > 0 ? "ETA " + fmtEta(sample.memory_remaining / net) : "not converging yet";
    }
    var outcome = attempt.downtime_ms !== null && attempt.downtime_ms !== undefined ? "downtime " + attempt.downtime_ms + " ms" : "";
    if (attempt.driver === "rehearsal") outcome = (outcome ? outcome + " · " : "") + "rehearsal";
    if (attempt.force_complete_requested && item.status === "running") outcome = (outcome ? outcome + " · " : "") + "force-complete asked";
    if (attempt.postcopy && item.status === "running") outcome = (outcome ? outcome + " · " : "") + "post-copy";
    var waiting = item.status === "queued" && item.held_by ? "waiting for " + item.held_by : "";
    var last = el("td", { class: "muted", "data-held-by": item.held_by || "", text: [waiting, eta, outcome, attempt.error_message || ""].filter(Boolean).join(" · ") });
    if (this.canForce(item, attempt)) last.appendChild(this.forceButton(item, sample));
    row.replaceChildren(
      el("td", { text: item.vm }),
      el("td", { text: (item.source || "—") + " → " + (item.destination || "—") }),
      el("td", { class: "status-" + item.status, "data-status": item.status, text: item.status.replace("_", " ") }),
      el("td", {}, [chips, bars]),
      last
    );
    row.dataset.status = item.status;
    row.dataset.memPct = memPct;
    if (item.sample) this.addPoint(item.id, item.sample);
    if (attempt.downtime_ms !== null && attempt.downtime_ms !== undefined) this.seriesFor(item.id).downtime = attempt;
  };

  // Force-complete (operators): the guest pauses on its source so the rest of its memory
  // moves; the expected extra downtime is shown before the operator confirms.
  PlanLive.prototype.canForce = function (item, attempt) {
    return this.root.dataset.canOperate === "1" && item.status === "running" && item.mode !== "storage_only" &&
      (attempt.phase === "transfer" || attempt.phase === "converge") &&
      !attempt.postcopy && !attempt.force_complete_requested && !attempt.cancel_requested;
  };

  PlanLive.prototype.forceButton = function (item, sample) {
    var self = this;
    var box = el("span", { class: "force" });
    var ask = el("button", { type: "button", class: "small", "data-force": item.id, text: "Force-complete…" });
    ask.addEventListener("click", function (ev) {
      ev.stopPropagation();
      var text = "The guest pauses on its source until the rest arrives";
      if (sample.memory_remaining && sample.transfer_bps) {
        var seconds = sample.memory_remaining / sample.transfer_bps;
        text += ": about " + (seconds < 10 ? seconds.toFixed(1) : Math.round(seconds)) + " s more downtime (" +
          Math.round(sample.memory_remaining / MIB) + " MiB at " + Math.round(sample.transfer_bps / MIB) + " MiB/s)";
      }
      var go = el("button", { type: "button", class: "danger small", "data-force-confirm": item.id, text: "Pause and complete" });
      var keep = el("button", { type: "button", class: "small", text: "Keep going" });
      go.addEventListener("click", function (e) { e.stopPropagation(); self.force(item, box); });
      keep.addEventListener("click", function (e) { e.stopPropagation(); box.replaceChildren(ask); });
      box.replaceChildren(el("span", { "data-force-text": item.id, text: text + ". " }), go, keep);
    });
    box.appendChild(ask);
    return box;
  };

  PlanLive.prototype.force = function (item, box) {
    box.replaceChildren(el("span", { text: "asking…" }));
    fetch("/api/v1/items/" + item.id + "/force-complete/", {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRFToken": this.root.dataset.csrf || "" },
      body: JSON.stringify({ reason: "" }),
    }).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (body) {
        var said = r.ok ? "force-complete asked" : (body.detail || body.error || ("refused (HTTP " + r.status + ")"));
        box.replaceChildren(el("span", { "data-force-result": item.id, class: r.ok ? "ok" : "error", text: said }));
      });
    }).catch(function () {
      box.replaceChildren(el("span", { class: "error", text: "could not reach Ferry; try again" }));
    });
  };

  PlanLive.prototype.seriesFor = function (id) {
    id = String(id);
    if (!this.series[id]) this.series[id] = { t: [], remaining: [], rate: [], dirty: [], downtime: null, keys: {} };
    return this.series[id];
  };

  PlanLive.prototype.addPoint = function (id, s) {
    var ser = this.seriesFor(id);
    var key = s.at + "|" + s.elapsed_ms;
    if (ser.keys[key]) return;
    ser.keys[key] = true;
    ser.t.push(s.at);
    ser.remaining.push(s.memory_remaining !== null ? s.memory_remaining / MIB : null);
    ser.rate.push(s.transfer_bps !== null ? s.transfer_bps / MIB : null);
    ser.dirty.push(s.dirty_rate_bps !== null ? s.dirty_rate_bps / MIB : null);
  };

  PlanLive.prototype.event = function (e) {
    if (e.kind === "stream.closed" || e.kind === "stream.forbidden") {
      var banner = this.root.querySelector("[data-closed]");
      if (banner) banner.hidden = false;
      return;
    }
    this.drawn += 1;
    this.root.dataset.eventsDrawn = this.drawn;
    if (e.seq) { this.seqs.push(e.seq); this.root.dataset.seqs = this.seqs.join(","); }
    this.root.dataset.lastSeq = e.seq || this.root.dataset.lastSeq;
    var p = e.payload || {};
    var sample = p.sample || (p.memory_total !== undefined ? p : null);
    if (sample && !sample.at) sample = Object.assign({ at: e.at }, sample);  // progress events carry their time on the event
    if (e.kind === "item.progress" && sample && e.item) {
      this.addPoint(e.item, sample);
      var row = this.rows[e.item];
      if (row) {
        var memPct = pct(sample.memory_processed, sample.memory_total);
        var bar = row.querySelector(".bar span");
        if (bar) bar.style.width = memPct + "%";
        row.dataset.memPct = memPct;
        var etaCell = row.lastChild;
        if (etaCell && p.eta_s !== undefined && p.eta_s !== null) etaCell.textContent = "ETA " + fmtEta(p.eta_s);
      }
      if (String(e.item) === this.chartItem) this.drawChart();
      // Delay from the sample being stored (the event's time) to it being drawn, kept on
      // the element for tests and the closing figures (last 500 values, milliseconds).
      var delay = Date.now() - Date.parse(e.at);
      if (isFinite(delay)) {
        this.delays = (this.delays || []).concat([delay]).slice(-500);
        this.root.dataset.drawDelaysMs = this.delays.join(",");
      }
      return;
    }
    // Phase, status and plan changes carry less than a snapshot; refresh (debounced).
    var self = this;
    clearTimeout(this.refreshTimer);
    this.refreshTimer = setTimeout(function () { self.live.fetchSnapshot(); }, 250);
  };

  PlanLive.prototype.drawChart = function () {
    if (!this.chartEl || typeof Plotly === "undefined" || !this.chartItem) return;
    var s = this.seriesFor(this.chartItem);
    var traces = [
      { x: s.t, y: s.remaining, name: "memory remaining (MiB)", mode: "lines", line: { color: "#1f5fae" } },
      { x: s.t, y: s.rate, name: "transfer (MiB/s)", mode: "lines", yaxis: "y2", line: { color: "#3c8d5a" } },
      { x: s.t, y: s.dirty, name: "dirty rate (MiB/s)", mode: "lines", yaxis: "y2", line: { color: "#d9822b", dash: "dot" } },
    ];
    var shapes = [];
    if (s.downtime && s.downtime.finished_at) {
      shapes.push({ type: "line", x0: s.downtime.finished_at, x1: s.downtime.finished_at, yref: "paper", y0: 0, y1: 1, line: { color: "#c0392b", width: 2 } });
    }
    var layout = Object.assign({}, (window.FerryCharts || {}).layoutBase || {}, {
      yaxis: { title: { text: "MiB" } },
      yaxis2: { title: { text: "MiB/s" }, overlaying: "y", side: "right" },
      shapes: shapes,
      annotations: shapes.length ? [{ x: s.downtime.finished_at, y: 1, yref: "paper", text: "switchover, downtime " + s.downtime.downtime_ms + " ms", showarrow: false, xanchor: "right" }] : [],
      margin: { l: 55, r: 55, t: 10, b: 60 },
    });
    Plotly.react(this.chartEl, traces, layout, { displaylogo: false, responsive: true });
  };

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-plan-live]").forEach(function (root) {
      var widget = new PlanLive(root);
      root.ferry = widget;
      widget.start();
    });
  });
})();
