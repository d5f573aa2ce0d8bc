// A campaign's public status page: reads the redacted snapshot of its status link every
// 5 s (the plan page has a websocket; a campaign changes at the pace of hosts, so polling
// is enough) and redraws the host steps and plans. A revoked or expired link answers 410:
// the page says so and stops. No inline scripts (strict CSP).
(function () {
  "use strict";
  var root = document.querySelector("[data-campaign-status]");
  if (!root) return;
  var url = root.getAttribute("data-snapshot-url");
  function text(sel, value) {
    var node = root.querySelector(sel);
    if (node) node.textContent = value;
  }
  function stepText(s) {
    return s.state + (s.duration_s !== null && s.duration_s !== undefined ? " (" + Math.round(s.duration_s) + " s)" : "");
  }
  function render(snap) {
    var c = snap.campaign;
    var state = root.querySelector("[data-campaign-state]");
    state.textContent = c.status;
    state.className = "plan-status status-" + c.status;
    text("[data-campaign-note]", c.note || "");
    text("[data-progress-text]", snap.progress.hosts_done + " of " + snap.progress.hosts + " hosts done.");
    root.querySelector("[data-progress-bar]").style.width = snap.progress.percent + "%";
    snap.hosts.forEach(function (h) {
      var row = root.querySelector('tr[data-position="' + h.position + '"]');
      if (!row) return;
      row.querySelector(".phase").textContent = h.phase;
      h.steps.forEach(function (s) {
        var td = row.querySelector('[data-step="' + s.key + '"]');
        if (!td) return;
        td.textContent = stepText(s);
        td.className = "step step-" + s.state;
      });
    });
    var plans = document.querySelector("[data-plans]");
    if (plans && snap.plans.length) {
      plans.textContent = "";
      snap.plans.forEach(function (p) {
        var tr = document.createElement("tr");
        [p.host, p.role, p.status, p.vms_done + " of " + p.vms].forEach(function (v) {
          var td = document.createElement("td");
          td.textContent = v;
          tr.appendChild(td);
        });
        var bar = document.createElement("td");
        bar.innerHTML = '<div class="bars"><div class="bar"><span></span></div></div>';
        bar.querySelector("span").style.width = p.percent + "%";
        tr.appendChild(bar);
        plans.appendChild(tr);
      });
    }
    return !c.terminal;
  }
  function poll() {
    fetch(url, { credentials: "omit", headers: { Accept: "application/json" }, cache: "no-store" })
      .then(function (r) {
        if (r.status === 404 || r.status === 410) {
          root.querySelector("[data-closed]").hidden = false;
          return null;
        }
        return r.ok ? r.json().then(function (snap) { if (render(snap)) setTimeout(poll, 5000); }) : setTimeout(poll, 10000);
      })
      .catch(function () { setTimeout(poll, 10000); });
  }
  if (root.getAttribute("data-terminal") !== "1") setTimeout(poll, 5000);
})();
