// Keeps a campaign page live: reads the campaign from the API every 2 s while it is not
// finished and updates the status, the reason and each host's phase and timeline cells.
(function () {
  "use strict";
  var table = document.getElementById("campaign-steps");
  if (!table) return;
  var url = table.getAttribute("data-api");
  var PHASES = ["maintenance", "drain", "gate", "host_action", "wait_healthy", "exit"];
  var DONE = { completed: 1, failed: 1, cancelled: 1 };
  var initial = (document.getElementById("campaign-status") || {}).getAttribute
    ? document.getElementById("campaign-status").getAttribute("data-status")
    : "";
  function hhmmss(iso) { return iso ? iso.slice(11, 19) : ""; }
  function cell(t) {
    if (!t) return "";
    return hhmmss(t.start) + (t.end ? " → " + hhmmss(t.end) : "");
  }
  function render(c) {
    document.getElementById("campaign-status").textContent = c.status;
    document.getElementById("campaign-stage").textContent = c.stage;
    document.getElementById("campaign-reason").textContent = c.status_reason || "—";
    c.steps.forEach(function (s) {
      var row = table.querySelector('tr[data-step="' + s.id + '"]');
      if (!row) return;
      row.querySelector(".phase .state").textContent = s.phase.replace("_", " ");
      PHASES.forEach(function (p) {
        var td = row.querySelector(".t-" + p);
        if (td) td.textContent = cell((s.timeline || {})[p]);
      });
      row.querySelector(".note").textContent = s.reason || "";
      var planCell = row.querySelector(".plan");
      if (s.plan && s.plan_status) {
        var link = planCell.querySelector("a") || document.createElement("a");
        link.href = "/plans/" + s.plan + "/";
        link.textContent = s.plan_status;
        if (!link.parentNode) { planCell.textContent = ""; planCell.appendChild(link); }
      }
    });
    var plans = document.getElementById("campaign-plans");
    if (plans && c.plans && c.plans.length) {
      plans.textContent = "";
      c.plans.forEach(function (p) {
        var li = document.createElement("li");
        var a = document.createElement("a");
        a.href = "/plans/" + p.id + "/";
        a.textContent = p.name;
        li.appendChild(a);
        li.appendChild(document.createTextNode(" — " + p.campaign_role + ", " + p.status));
        plans.appendChild(li);
      });
    }
    if (c.status !== initial) {
      // The buttons offered belong to the status the page was drawn in.
      var actions = document.getElementById("campaign-actions");
      if (actions) actions.textContent = "";
    }
    return !DONE[c.status];
  }
  function poll() {
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (c) { if (c && render(c)) setTimeout(poll, 2000); })
      .catch(function () { setTimeout(poll, 5000); });
  }
  poll();
})();
