"""Websocket consumers: read-only subscribers. Commands go through the REST API.

A subscriber is authorized with the same permission function the API uses, receives a
snapshot first, then numbered events; a heartbeat every ~15 s lets the page tell "live"
from "stalled". Streams get their events, heartbeats and re-authorization through the
process's live hub (migrations_app.live_hub), which holds one channel-layer subscription
per group for all of them.
"""

import json

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from dashboard.metrics import websocket_client_closed, websocket_client_opened
from dashboard.permissions import can
from dashboard.ws_token_auth import SCOPE_KEY as TOKEN_SCOPE_KEY
from dashboard.ws_token_auth import token_stream_allowed
from migrations_app.events import DASHBOARD_GROUP, plan_group
from migrations_app.live_hub import live_hub
from migrations_app.models import MigrationPlan
from migrations_app.selectors.live import dashboard_snapshot, plan_snapshot


def _read(function):
    """A snapshot read in a thread of the shared pool, not the one thread all of a process's
    thread-sensitive calls queue on: a crowd connecting at once (browsers reconnecting
    after a restart) is answered in parallel, within Daphne's 5 s handshake limit."""
    return database_sync_to_async(function, thread_sensitive=False)


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
        websocket_client_opened()
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
            websocket_client_closed()
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
        from django.contrib.auth import get_user_model

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
        from django.contrib.sessions.backends.base import SessionBase

        store: SessionBase = session.__class__(session_key=session.session_key)
        return store.exists(session.session_key) and can(user, "plan.view")


class PlanConsumer(LiveConsumer):
    """/ws/plans/<id>/ for signed-in users who may view plans."""

    async def authorize_and_snapshot(self):
        plan_id = self.scope["url_route"]["kwargs"]["plan_id"]
        self.groups_to_join = [plan_group(plan_id)]
        return await _read(self._snapshot)(self.scope.get("user"), plan_id)

    @staticmethod
    def _snapshot(user, plan_id):
        if user is None or not can(user, "plan.view"):
            return None
        plan = MigrationPlan.objects.filter(pk=plan_id).first()
        return plan_snapshot(plan) if plan else None


class StatusConsumer(LiveConsumer):
    """/ws/status/<token>/ for stakeholders holding a valid status link (no login)."""

    async def authorize_and_snapshot(self):
        token = self.scope["url_route"]["kwargs"]["token"]
        return await _read(self._snapshot)(token)

    def _snapshot(self, token):
        from dashboard.sharelinks import share_link_group, share_link_lookup

        link = share_link_lookup(token)
        if link is None or link.state() != "active":
            return None
        self.link_id = link.pk
        self.groups_to_join = [plan_group(link.plan_id), share_link_group(link.pk)]
        return plan_snapshot(link.plan, redact_hosts=not link.show_host_names)

    def authorization_key(self):
        return ("link", getattr(self, "link_id", None))

    def still_authorized(self) -> bool:
        from dashboard.models_sharelink import ShareLink

        link = ShareLink.objects.filter(pk=getattr(self, "link_id", None)).first()
        return link is not None and link.state() == "active"


class DashboardConsumer(LiveConsumer):
    """/ws/dashboard/ for signed-in users who may view plans."""

    async def authorize_and_snapshot(self):
        self.groups_to_join = [DASHBOARD_GROUP]
        return await _read(self._snapshot)(self.scope.get("user"))

    @staticmethod
    def _snapshot(user):
        if user is None or not can(user, "plan.view"):
            return None
        return dashboard_snapshot()
