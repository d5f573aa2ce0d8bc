// Home page: running plans with progress bars, kept live over /ws/dashboard/.
(function () {
  "use strict";
  function render(root, snap) {
    var list = root.querySelector("[data-running]");
    if (!list) return;
    var plans = snap.plans || [];
    list.replaceChildren();
    if (!plans.length) {
      var empty = document.createElement("p");
      empty.className = "muted";
      empty.textContent = "No plan is running or scheduled.";
      list.appendChild(empty);
      return;
    }
    plans.forEach(function (p) {
      var counts = p.items || {};
      var total = Object.keys(counts).reduce(function (a, k) { return a + counts[k]; }, 0);
      var done = (counts.completed || 0) + (counts.failed || 0) + (counts.cancelled || 0);
      var pct = total ? Math.round((100 * done) / total) : 0;
      var row = document.createElement("div");
      row.className = "running-plan";
      row.dataset.planId = p.id;
      var link = document.createElement("a");
      link.href = "/plans/" + p.id + "/";
      link.textContent = p.name;
      var status = document.createElement("span");
      status.className = "plan-status status-" + p.status;
      status.textContent = p.status + " · " + done + "/" + total + " items" + (counts.failed ? " · " + counts.failed + " failed" : "") + (p.eta_seconds ? " · ETA " + Math.ceil(p.eta_seconds / 60) + " min" : "");
      var bar = document.createElement("div");
      bar.className = "bars";
      bar.innerHTML = '<div class="bar"><span></span></div>';
      bar.querySelector("span").style.width = pct + "%";
      row.append(link, " ", status, bar);
      list.appendChild(row);
    });
  }
  document.addEventListener("DOMContentLoaded", function () {
    var root = document.querySelector("[data-dashboard-live]");
    if (!root || !window.FerryLive) return;
    var stateEl = root.querySelector("[data-live-state]");
    var live = new window.FerryLive({
      wsPath: "/ws/dashboard/",
      snapshotUrl: "/api/v1/live/dashboard/",
      eventsUrl: null,
      onSnapshot: function (s) { render(root, s); },
      onEvent: function () {
        clearTimeout(root.refresh);
        root.refresh = setTimeout(function () { live.fetchSnapshot(); }, 500);
      },
      onState: function (st) {
        if (stateEl) { stateEl.textContent = st === "polling" ? "offline (polling)" : st; stateEl.className = "live-state live-" + st; }
      },
    });
    live.start();
  });
})();
