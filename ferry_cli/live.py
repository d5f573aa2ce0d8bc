"""Following a plan live: the plan websocket (/ws/plans/<id>/) with the protocol the web
pages use (static/js/live.js): a snapshot first, then numbered events; an event that
skips numbers makes the client fetch the missed range over REST before going on; events
at or below the last number are duplicates; a heartbeat comes every ~15 s, so 40 s of
silence means the stream stalled and is opened again. When the websocket cannot be opened
(a proxy that blocks upgrades, say) the follower polls the REST twin of the snapshot.
"""

import json
import time
from collections.abc import Callable
from urllib.parse import urlsplit

from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException
from websockets.sync.client import connect

from ferry_cli.client import USER_AGENT, FerryClient, origin_of
from ferry_cli.errors import EXIT_TIMEOUT, CliError

PLAN_ENDED = {"completed", "failed", "partially_completed", "cancelled", "rejected"}
ITEM_ENDED = {"completed", "failed", "cancelled", "needs_attention"}
STALL_SECONDS = 40.0
FAILURES_BEFORE_POLLING = 3
RETRY_WEBSOCKET_SECONDS = 30.0
_ATTEMPT_TO_ITEM = {"completed": "completed", "failed": "failed", "cancelled": "cancelled"}


def websocket_url(url: str, plan_id: int) -> str:
    parts = urlsplit(url)
    scheme = "wss" if parts.scheme == "https" else "ws"
    return f"{scheme}://{parts.netloc}{parts.path}/ws/plans/{plan_id}/"


class PlanView:
    """What is known of a plan: the last snapshot with the events since applied."""

    def __init__(self):
        self.plan: dict = {}
        self.run: dict | None = None
        self.items: dict[int, dict] = {}
        self.run_id: int | None = None
        self.last_seq = 0

    def apply_snapshot(self, snap: dict) -> None:
        run = snap.get("run")
        run_id = run["id"] if run else self.run_id
        # A REST snapshot may be older than events already applied: within one run the
        # sequence never moves backwards, or events would be applied twice.
        if run_id != self.run_id or (snap.get("last_seq") or 0) > self.last_seq:
            self.last_seq = snap.get("last_seq") or 0
        self.run_id = run_id
        self.plan = snap.get("plan") or {}
        self.run = run
        self.items = {row["id"]: dict(row) for row in snap.get("items") or []}

    def apply_event(self, event: dict) -> None:
        kind = event.get("kind") or ""
        payload = event.get("payload") or {}
        item = self.items.get(event.get("item"))
        if kind.startswith("run.") and self.run is not None:
            self.run["status"] = payload.get("status", self.run.get("status"))
        if item is None:
            return
        attempt = item.get("attempt") or {}
        if payload.get("driver"):
            attempt["driver"] = payload["driver"]
        if kind in ("item.queued", "item.retry", "item.requeued"):
            item["status"] = "queued"
            item["sample"] = None
        elif kind in ("item.started", "item.reattached"):
            item["status"] = "running"
        elif kind == "item.phase":
            attempt["phase"] = payload.get("phase")
        elif kind == "item.progress":
            attempt["phase"] = payload.get("phase", attempt.get("phase"))
            item["sample"] = payload
        elif kind == "item.finished":
            item["status"] = _ATTEMPT_TO_ITEM.get(payload.get("status"), payload.get("status"))
            item["status_reason"] = payload.get("error_message") or ""
            attempt.update(
                status=payload.get("status"),
                downtime_ms=payload.get("downtime_ms"),
                total_time_ms=payload.get("total_time_ms"),
            )
        item["attempt"] = attempt

    def outcome(self) -> str | None:
        """How the plan ended, "waiting_for_operator" when its run stopped with items that
        did not complete, or None while it goes on (or waits for approval or a start)."""
        status = self.plan.get("status")
        items = list(self.items.values())
        if status in PLAN_ENDED:
            # A cancelled plan ends at once while its running items are still being
            # aborted: their end (cancelled, or completed when too late) is still news.
            return None if any(i["status"] == "running" for i in items) else status
        if status == "paused" and items and all(i["status"] in ITEM_ENDED for i in items):
            if any(i["status"] != "completed" for i in items):
                return "waiting_for_operator"
        return None

    def succeeded(self) -> bool:
        items = list(self.items.values())
        return self.plan.get("status") == "completed" and all(
            i["status"] == "completed" for i in items
        )


class Follower:
    """Follows one plan until `until(view)` says stop, calling `on_update` on each change."""

    def __init__(
        self,
        client: FerryClient,
        plan_id: int,
        *,
        on_update: Callable[[PlanView, dict | None], None],
        poll_only: bool = False,
        poll_seconds: float = 2.0,
    ):
        self.client = client
        self.plan_id = plan_id
        self.on_update = on_update
        self.poll_only = poll_only
        self.poll_seconds = poll_seconds
        self.view = PlanView()
        self.transport = "polling" if poll_only else "websocket"

    # -- REST ------------------------------------------------------------------------------
    def refresh(self) -> None:
        self.view.apply_snapshot(self.client.get(f"/api/v1/live/plans/{self.plan_id}/"))
        self.on_update(self.view, None)

    def _fill(self, after: int) -> None:
        """Apply the events after `after` from the REST range, in order."""
        while self.view.run_id is not None:
            body = self.client.get(f"/api/v1/runs/{self.view.run_id}/events/", after=after)
            for event in sorted(body.get("events", []), key=lambda e: e["seq"]):
                if event["seq"] == self.view.last_seq + 1:
                    self._apply(event)
            if not body.get("more") or self.view.last_seq <= after:
                return
            after = self.view.last_seq

    # -- events ----------------------------------------------------------------------------
    def _apply(self, event: dict) -> None:
        self.view.last_seq = event["seq"]
        self.view.apply_event(event)
        self.on_update(self.view, event)

    def accept(self, event: dict) -> None:
        if event.get("seq") is None:  # a plan-level change outside a run: re-read it
            self.on_update(self.view, event)
            self.refresh()
            return
        if event.get("run") != self.view.run_id:  # a new run numbers from 1 again
            self.view.run_id = event.get("run")
            self.view.last_seq = 0
        if event["seq"] <= self.view.last_seq:
            return
        if event["seq"] > self.view.last_seq + 1:
            self._fill(self.view.last_seq)
            if event["seq"] > self.view.last_seq + 1:  # a hole the range did not close
                self.refresh()
                return
            if event["seq"] <= self.view.last_seq:
                return
        self._apply(event)

    def _message(self, data: dict) -> None:
        kind = data.get("type")
        if kind == "snapshot":
            if data.get("run") and data["run"]["id"] == self.view.run_id:
                if (data.get("last_seq") or 0) > self.view.last_seq:
                    self._fill(self.view.last_seq)  # a reconnect: replay what was missed
            self.view.apply_snapshot(data)
            self.on_update(self.view, None)
        elif kind == "event":
            self.accept(data)
        elif kind == "heartbeat":
            # A cheap re-read every ~15 s: a plan-level change whose publication was lost
            # (the channel layer restarting) is seen at the latest then.
            self.refresh()
        elif kind == "closed":
            raise CliError(f"The server ended the stream: {data.get('detail') or 'access ended'}.")

    # -- the loop --------------------------------------------------------------------------
    def _stream(self, until, deadline: float | None) -> bool:
        """Read the websocket until `until` holds (True) or the stream stalls (False)."""
        headers = {"Authorization": f"Token {self.client.token}"}
        with connect(
            websocket_url(self.client.url, self.plan_id),
            origin=origin_of(self.client.url),
            additional_headers=headers,
            user_agent_header=USER_AGENT,
            open_timeout=10,
        ) as ws:
            self.transport = "websocket"
            heard = time.monotonic()
            while True:
                _check_deadline(deadline)
                try:
                    raw = ws.recv(timeout=1.0)
                except TimeoutError:
                    if time.monotonic() - heard > STALL_SECONDS:
                        return False
                    continue
                heard = time.monotonic()
                try:
                    data = json.loads(raw)
                except ValueError:
                    continue
                if isinstance(data, dict):
                    self._message(data)
                if until(self.view):
                    return True

    def follow(self, until: Callable[[PlanView], bool], timeout: float | None = None) -> PlanView:
        deadline = time.monotonic() + timeout if timeout else None
        self.refresh()  # a missing plan or a refused read is an API error with its detail
        failures = 0
        next_websocket = 0.0
        while not until(self.view):
            _check_deadline(deadline)
            if not self.poll_only and time.monotonic() >= next_websocket:
                try:
                    if self._stream(until, deadline):
                        return self.view
                    failures = 0
                except ConnectionClosed as exc:
                    code = exc.rcvd.code if exc.rcvd else None
                    if code == 4403:
                        raise CliError("The server refused to stream this plan to you.") from None
                    if code == 4410:
                        raise CliError("The server ended the stream: access ended.") from None
                    failures += 1
                except (InvalidStatus, WebSocketException, OSError, TimeoutError):
                    failures += 1
                if failures >= FAILURES_BEFORE_POLLING:
                    self.transport = "polling"
                    next_websocket = time.monotonic() + RETRY_WEBSOCKET_SECONDS
                    failures = 0
                elif failures:
                    time.sleep(min(8.0, 0.5 * 2**failures))
                    continue
            self.refresh()
            if until(self.view):
                break
            time.sleep(self.poll_seconds)
        return self.view


def _check_deadline(deadline: float | None) -> None:
    if deadline is not None and time.monotonic() > deadline:
        raise CliError(
            "Stopped waiting: --timeout reached (the plan goes on).", exit_code=EXIT_TIMEOUT
        )
