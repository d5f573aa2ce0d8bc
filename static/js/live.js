// Ferry live client: one small module used by every live page.
// Snapshot first, then numbered events; a gap in sequence numbers is filled over REST;
// a heartbeat every ~15 s tells "live" from "stalled"; reconnects with backoff; falls
// back to polling the REST snapshot when websockets are blocked. The page shows which.
(function () {
  "use strict";

  function FerryLive(options) {
    this.wsPath = options.wsPath;            // e.g. "/ws/plans/3/"
    this.snapshotUrl = options.snapshotUrl;  // REST twin of the first message
    this.eventsUrl = options.eventsUrl;      // function(runId, afterSeq) -> URL, or null
    this.onSnapshot = options.onSnapshot || function () {};
    this.onEvent = options.onEvent || function () {};
    this.onState = options.onState || function () {};
    this.pollMs = options.pollMs || 5000;
    this.lastSeq = 0;
    this.runId = null;
    this.attempt = 0;
    this.failuresBeforePolling = options.failuresBeforePolling || 3;
    this.state = "connecting";
    this.seen = new Set();
  }

  FerryLive.prototype.setState = function (state) {
    if (this.state === state) return;
    this.state = state;
    this.onState(state);
  };

  FerryLive.prototype.start = function () {
    if (!("WebSocket" in window)) { this.startPolling(); return; }
    this.connect();
  };

  FerryLive.prototype.connect = function () {
    var self = this;
    var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    var opened = false;
    var ws;
    try {
      ws = new WebSocket(scheme + window.location.host + this.wsPath);
    } catch (e) {
      this.scheduleReconnect();
      return;
    }
    this.ws = ws;
    ws.onopen = function () { opened = true; self.attempt = 0; self.armWatchdog(); };
    ws.onmessage = function (msg) {
      self.armWatchdog();
      var data;
      try { data = JSON.parse(msg.data); } catch (e) { return; }
      self.handle(data);
    };
    ws.onclose = function (ev) {
      clearTimeout(self.watchdog);
      if (ev.code === 4403 || ev.code === 4410) {
        self.setState(ev.code === 4410 ? "closed" : "forbidden");
        self.onEvent({ kind: ev.code === 4410 ? "stream.closed" : "stream.forbidden" });
        return;
      }
      if (!opened) self.attempt += 1;
      self.scheduleReconnect();
    };
  };

  // No message (events or the ~15 s heartbeat) for 40 s: the stream is stalled.
  FerryLive.prototype.armWatchdog = function () {
    var self = this;
    clearTimeout(this.watchdog);
    this.watchdog = setTimeout(function () {
      if (self.ws) self.ws.close();
    }, 40000);
  };

  FerryLive.prototype.scheduleReconnect = function () {
    var self = this;
    if (this.attempt >= this.failuresBeforePolling) {
      this.startPolling();
    } else {
      this.setState("reconnecting");
    }
    var delay = Math.min(30000, 500 * Math.pow(2, Math.min(this.attempt, 6))) * (0.75 + Math.random() / 2);
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = setTimeout(function () { self.connect(); }, delay);
  };

  FerryLive.prototype.startPolling = function () {
    var self = this;
    this.setState("polling");
    if (this.pollTimer) return;
    var tick = function () {
      if (self.state === "live") { self.pollTimer = null; return; }
      self.fetchSnapshot().finally(function () {
        self.pollTimer = setTimeout(tick, self.pollMs);
      });
    };
    tick();
  };

  FerryLive.prototype.fetchSnapshot = function () {
    var self = this;
    return fetch(this.snapshotUrl, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); })
      .then(function (snap) { self.applySnapshot(snap); })
      .catch(function () {});
  };

  FerryLive.prototype.applySnapshot = function (snap) {
    var run = snap.run ? snap.run.id : this.runId;
    // A snapshot fetched over REST can be older than events already applied from the
    // stream: never move the sequence backwards within a run, or events would repeat.
    if (run !== this.runId || (snap.last_seq || 0) > this.lastSeq) this.lastSeq = snap.last_seq || 0;
    this.runId = run;
    this.onSnapshot(snap);
  };

  FerryLive.prototype.handle = function (data) {
    if (data.type === "snapshot") {
      var self = this;
      if (this.lastSeq > 0 && data.run && data.run.id === this.runId && data.last_seq > this.lastSeq && this.eventsUrl) {
        // A reconnect: replay what was missed, in order, before taking the new snapshot.
        this.fetchRange(this.lastSeq).finally(function () {
          self.applySnapshot(data);
          self.setState("live");
        });
      } else {
        this.applySnapshot(data);
        this.setState("live");
      }
      if (this.pollTimer) { clearTimeout(this.pollTimer); this.pollTimer = null; }
    } else if (data.type === "event") {
      this.acceptEvent(data);
    } else if (data.type === "closed") {
      this.setState("closed");
      this.onEvent({ kind: "stream.closed", payload: data });
    }
  };

  FerryLive.prototype.acceptEvent = function (ev) {
    if (ev.seq === null || ev.seq === undefined) {
      // A plan-level change outside a run: take a fresh snapshot.
      this.onEvent(ev);
      this.fetchSnapshot();
      return;
    }
    if (ev.run !== this.runId) {
      // A new run started: its numbering starts over.
      this.runId = ev.run;
      this.lastSeq = 0;
    }
    if (ev.seq <= this.lastSeq) return;             // duplicate or already in the snapshot
    if (ev.seq > this.lastSeq + 1) {                 // gap: fetch what we missed first
      this.fillGap(ev);
      return;
    }
    this.lastSeq = ev.seq;
    this.onEvent(ev);
  };

  // Fetch events after `after` from REST and deliver the consecutive ones, following
  // `more` pages. Resolves true when the range was read, false when the fetch failed.
  FerryLive.prototype.fetchRange = function (after) {
    var self = this;
    var run = this.runId;
    return fetch(this.eventsUrl(run, after), { credentials: "same-origin" })
      .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); })
      .then(function (body) {
        var missed = Array.isArray(body) ? body : (body.events || body.results || []);
        missed.sort(function (a, b) { return a.seq - b.seq; });
        missed.forEach(function (m) { if (m.seq === self.lastSeq + 1) { self.lastSeq = m.seq; self.onEvent(m); } });
        if (body.more && self.lastSeq > after) return self.fetchRange(self.lastSeq);
        return true;
      })
      .catch(function () { return false; });
  };

  // An event arrived ahead of lastSeq + 1: fetch the range in between, then deliver the
  // events that queued up meanwhile; a hole that remains is closed by a fresh snapshot.
  FerryLive.prototype.fillGap = function (ev) {
    var self = this;
    if (!this.eventsUrl) { this.fetchSnapshot(); return; }
    if (this.filling) { this.pending = (this.pending || []).concat([ev]); return; }
    this.filling = true;
    this.pending = [ev];
    this.fetchRange(this.lastSeq)
      .then(function (ok) { if (!ok) return self.fetchSnapshot(); })
      .finally(function () {
        self.filling = false;
        var queued = self.pending || [];
        self.pending = [];
        queued.sort(function (a, b) { return a.seq - b.seq; });
        queued.forEach(function (q) { if (q.seq === self.lastSeq + 1) { self.lastSeq = q.seq; self.onEvent(q); } else if (q.seq > self.lastSeq + 1) { self.fetchSnapshot(); } });
      });
  };

  window.FerryLive = FerryLive;
})();
