"""The base of Ferry's websocket streams: read-only subscribers fed by the live hub.

A subscriber is authorized with the same permission function the API uses, receives a
snapshot first, then numbered events; a heartbeat every ~15 s lets the page tell "live"
from "stalled". Streams get their events, heartbeats and re-authorization through the
process's live hub (dashboard.live.hub), which holds one channel-layer subscription per
group for all of them. Subclasses say what to join and what the snapshot is.
"""

import json
import threading

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.contrib.auth import get_user_model
from django.contrib.sessions.backends.base import SessionBase
from django.db import connection

from dashboard.live.hub import live_hub
from dashboard.live.token_auth import SCOPE_KEY as TOKEN_SCOPE_KEY
from dashboard.live.token_auth import token_stream_allowed
from dashboard.permissions import can

_clients_lock = threading.Lock()
_clients = 0


def websocket_clients() -> int:
    """Live subscribers connected to this process (for /metrics)."""
    return _clients


def _count(delta: int) -> None:
    global _clients
    with _clients_lock:
        _clients = max(0, _clients + delta)


def read_in_pool(function):
    """A snapshot read in a thread of the shared pool, not the one thread all of a process's
    thread-sensitive calls queue on: a crowd connecting at once (browsers reconnecting
    after a restart) is answered in parallel, within Daphne's 5 s handshake limit.

    The read hands its pooled connection back when it ends: a pool thread otherwise kept
    it checked out for as long as the thread lived (each event loop's executor threads
    held one each, and a thread that ended with it never gave it back; a long test run
    ran the pool of 20 dry)."""

    def run(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        finally:
            connection.close()

    return database_sync_to_async(run, thread_sensitive=False)


MAX_CLIENT_FRAME = 4096  # clients only send pings; anything larger is hostile
CLOSE_FORBIDDEN = 4403
CLOSE_GONE = 4410
CLOSE_TOO_BIG = 1009


class LiveConsumer(AsyncWebsocketConsumer):
    """Common behaviour: snapshot, events, heartbeat, tolerant of junk input."""

    groups_to_join: list[str]
    # No channel of its own on the layer: everything a stream receives from the layer
    # comes through the hub's one subscription per group (get_channel_layer(None) is None).
    channel_layer_alias = None
    hub = None

    async def connect(self):
        snapshot = await self.authorize_and_snapshot()
        if snapshot is None:
            await self.close(code=CLOSE_FORBIDDEN)
            return
        await self.accept()
        _count(+1)
        self.counted = True
        self.hub = live_hub()
        if self.hub is not None:
            # The hub holds this stream's events until release(), so the snapshot is the
            # first frame. The snapshot is read again once subscribed: an event committed
            # between the first read and the subscription is then in it, instead of a gap
            # the page would have to fill over REST. Held events at or below its last_seq
            # are dropped by the client.
            await self.hub.subscribe(self, self.groups_to_join)
            snapshot = await self.authorize_and_snapshot()
            if snapshot is None:
                await self.close(code=CLOSE_FORBIDDEN)
                return
        await self.send_json({"type": "snapshot", **snapshot})
        if self.hub is not None:
            await self.hub.release(self)

    async def disconnect(self, code):
        if getattr(self, "counted", False):
            self.counted = False
            _count(-1)
        if self.hub is not None:
            await self.hub.unsubscribe(self)

    async def receive(self, text_data=None, bytes_data=None):
        raw = text_data if text_data is not None else (bytes_data or b"")
        if len(raw) > MAX_CLIENT_FRAME:
            await self.close(code=CLOSE_TOO_BIG)
            return
        try:
            message = json.loads(raw)
        except (ValueError, TypeError):
            await self.send_json({"type": "error", "detail": "Messages must be JSON."})
            return
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == "ping":
            await self.send_json({"type": "pong"})
        elif kind == "snapshot":
            snapshot = await self.authorize_and_snapshot()
            if snapshot is None:
                await self.close(code=CLOSE_FORBIDDEN)
                return
            await self.send_json({"type": "snapshot", **snapshot})
        else:
            await self.send_json(
                {"type": "error", "detail": "Unknown message type; this stream is read-only."}
            )

    async def live_event(self, message):
        text = message.get("text")
        if text is not None:
            await self.send(text_data=text)
        else:
            await self.send_json({"type": "event", **message["event"]})

    async def live_close(self, message):
        """Sent when the subscriber's authorization ends (revoked link, logged out)."""
        await self.send_json({"type": "closed", "detail": message.get("detail", "")})
        await self.close(code=CLOSE_GONE)

    async def send_json(self, data):
        await self.send(text_data=json.dumps(data, default=str))

    async def authorize_and_snapshot(self) -> dict | None:
        raise NotImplementedError

    def authorization_key(self):
        """Streams with equal keys share one still_authorized() answer per hub tick."""
        session = self.scope.get("session")
        user = self.scope.get("user")
        if self.scope.get(TOKEN_SCOPE_KEY):
            return ("token", self.scope[TOKEN_SCOPE_KEY], getattr(user, "pk", None))
        return ("session", getattr(session, "session_key", None), getattr(user, "pk", None))

    def still_authorized(self) -> bool:
        """Whether the signed-in session behind this stream is still valid."""
        session = self.scope.get("session")
        user = self.scope.get("user")
        # Re-read the account: the connect-time user object caches its roles, and a stream
        # lives for hours, so a removed role or a deactivated account must end it.
        pk = getattr(user, "pk", None)
        user = get_user_model().objects.filter(pk=pk, is_active=True).first() if pk else None
        token_valid = token_stream_allowed(self.scope)
        if token_valid is not None:  # opened with an API token: it must still be theirs
            return token_valid and user is not None and can(user, "plan.view")
        if session is None or not getattr(session, "session_key", None):
            # Streams opened without a session (tests, token auth) keep their user check.
            return user is not None and can(user, "plan.view")
        store: SessionBase = session.__class__(session_key=session.session_key)
        return store.exists(session.session_key) and can(user, "plan.view")
