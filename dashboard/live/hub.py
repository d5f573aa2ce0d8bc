"""The per-process live hub: one channel-layer subscription per group, fanned out locally.

A plan watched by 200 browsers used to cost 200 channel-layer messages per event (200
queue puts and deep copies in memory, 200 pops from Redis) and 200 consumer dispatches,
each with a thread hop to close stale database connections, all on the web server's one
event loop. The hub joins each group once per server process and hands the already
encoded frame to every local stream; it also re-checks every stream's authorization in
one database call per tick (one query per distinct link or session, not per stream) and
sends the heartbeats.

Guarantees kept: a stream gets nothing before its snapshot (events that arrive meanwhile
are held and sent right after it, in order); events of a group reach each stream in
layer order; a stream whose access ended is closed within REAUTHORIZE_SECONDS; a lost
layer connection closes the group's streams so browsers reconnect, take a fresh snapshot
and replay what they missed over REST.
"""

import asyncio
import logging
import weakref

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer

logger = logging.getLogger("ferry.live")

HEARTBEAT_SECONDS = 15
# How often an open stream re-checks that its subscriber may still read it (a logged-out
# session, an expired link); revocations also close streams at once through the layer.
REAUTHORIZE_SECONDS = 3
# Group memberships expire on the layer (a day by default); refresh them well before.
REJOIN_SECONDS = 600
# Closes a stream whose group lost the layer; the client reconnects on any code but its
# two final ones (4403, 4410). Not 1011: Daphne's websocket library only sends 1000 and
# 3000-4999 and raises on anything else, which would leave the stream open but deaf.
CLOSE_LAYER_LOST = 4503
# Layer messages a stream may be handed; anything else on a group is ignored, so a
# message cannot reach arbitrary consumer methods.
HANDLED = {"live.event": "live_event", "live.close": "live_close"}


class _Stream:
    """One local subscriber: its groups, and what waits for its snapshot to go out."""

    __slots__ = ("consumer", "groups", "ready", "held")

    def __init__(self, consumer, groups):
        self.consumer = consumer
        self.groups = list(groups)
        self.ready = False
        self.held: list[dict] = []


class _Group:
    """This process's single membership of one channel-layer group."""

    __slots__ = ("name", "channel", "streams", "joined", "reader")

    def __init__(self, name):
        self.name = name
        self.channel = ""
        self.streams: dict[object, _Stream] = {}
        self.joined: asyncio.Future | None = None
        self.reader: asyncio.Task | None = None


class LiveHub:
    """The live streams of one event loop and their shared layer subscriptions."""

    def __init__(self, layer):
        self.layer = layer
        self.streams: dict[object, _Stream] = {}
        self.groups: dict[str, _Group] = {}
        self.ticker: asyncio.Task | None = None

    # -- membership --------------------------------------------------------------------

    async def subscribe(self, consumer, groups) -> None:
        """Register a stream on `groups`; it receives nothing until `release(consumer)`."""
        stream = _Stream(consumer, groups)
        self.streams[consumer] = stream
        waits = []
        for name in stream.groups:
            group = self.groups.get(name)
            if group is None or _failed(group):
                group = self.groups[name] = _Group(name)
                group.joined = asyncio.ensure_future(self._join(group))
            group.streams[consumer] = stream
            waits.append(group.joined)
        if self.ticker is None or self.ticker.done():
            self.ticker = asyncio.ensure_future(self._tick())
        try:
            # Joined before the caller sends its snapshot: an event published from now on
            # is either in the snapshot or delivered (the client drops seq <= last_seq).
            for joined in waits:
                await asyncio.shield(joined)
        except BaseException:
            await self.unsubscribe(consumer)
            raise

    async def release(self, consumer) -> None:
        """The stream's snapshot is out: send what was held for it, then deliver live."""
        stream = self.streams.get(consumer)
        if stream is None:
            return
        while stream.held and consumer in self.streams:
            await self._deliver(stream, stream.held.pop(0))
        # No await between the last check and this: nothing can slip in out of order.
        stream.ready = True

    async def unsubscribe(self, consumer) -> None:
        """Forget a stream; leave a group on the layer when its last local stream goes."""
        stream = self.streams.pop(consumer, None)
        if stream is None:
            return
        for name in stream.groups:
            group = self.groups.get(name)
            if group is None:
                continue
            group.streams.pop(consumer, None)
            if not group.streams:
                await self._leave(group)
        if not self.streams and self.ticker is not None:
            self.ticker.cancel()
            self.ticker = None

    async def _join(self, group: _Group) -> None:
        group.channel = await self.layer.new_channel(prefix="ferry-hub.")
        await self.layer.group_add(group.name, group.channel)
        group.reader = asyncio.ensure_future(self._read(group))

    async def _leave(self, group: _Group) -> None:
        # Removed first, so a stream subscribing meanwhile starts a fresh membership.
        if self.groups.get(group.name) is group:
            del self.groups[group.name]
        if group.reader is not None:
            group.reader.cancel()
        if group.joined is not None and not group.joined.done():
            group.joined.cancel()
            return
        if not _failed(group):
            try:
                await self.layer.group_discard(group.name, group.channel)
            except Exception:  # the layer may be down; the membership expires there
                logger.warning("could not leave group %s", group.name, exc_info=True)

    # -- fan-out -----------------------------------------------------------------------

    async def _read(self, group: _Group) -> None:
        while True:
            try:
                message = await self.layer.receive(group.channel)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning(
                    "lost the layer for group %s; closing its streams", group.name, exc_info=True
                )
                await self._drop(group)
                return
            await self.fan_out(group, message)

    async def fan_out(self, group: _Group, message: dict) -> None:
        """Hand one layer message to every local stream of the group, in order."""
        for stream in list(group.streams.values()):
            if stream.ready:
                await self._deliver(stream, message)
            else:
                stream.held.append(message)

    async def _deliver(self, stream: _Stream, message: dict) -> None:
        handler = HANDLED.get(message.get("type"))
        if handler is None:
            logger.warning("ignored a %r message on a live group", message.get("type"))
            return
        try:
            await getattr(stream.consumer, handler)(message)
        except Exception:  # one broken stream must not starve the others
            logger.warning("could not deliver to a live stream", exc_info=True)
        if handler == "live_close":
            # The stream is closing: nothing more goes to it, whatever else is queued.
            await self.unsubscribe(stream.consumer)

    async def _drop(self, group: _Group) -> None:
        """The layer failed under a group: close its streams so their clients reconnect."""
        if self.groups.get(group.name) is group:
            del self.groups[group.name]
        for stream in list(group.streams.values()):
            # Forgotten first: a stream that cannot be closed must not linger deaf, fed
            # heartbeats that keep its page's stall watchdog quiet.
            await self.unsubscribe(stream.consumer)
            try:
                await stream.consumer.close(code=CLOSE_LAYER_LOST)
            except Exception:
                logger.warning("could not close a live stream", exc_info=True)

    # -- reauthorization and heartbeat --------------------------------------------------

    async def _tick(self) -> None:
        ticks = 0
        while True:
            await asyncio.sleep(REAUTHORIZE_SECONDS)
            ticks += 1
            try:
                await self.reauthorize()
            except Exception:  # the database may be away; check again next tick
                logger.warning("could not re-check live streams", exc_info=True)
            if ticks % round(HEARTBEAT_SECONDS / REAUTHORIZE_SECONDS) == 0:
                await self._heartbeat()
            if ticks % round(REJOIN_SECONDS / REAUTHORIZE_SECONDS) == 0:
                await self._rejoin()

    async def reauthorize(self) -> int:
        """Close every stream whose subscriber may no longer read it; return how many."""
        streams = [s for s in self.streams.values() if s.ready]
        if not streams:
            return 0
        verdicts = await database_sync_to_async(_verdicts)([s.consumer for s in streams])
        ended = 0
        for stream, allowed in zip(streams, verdicts, strict=True):
            if not allowed and stream.consumer in self.streams:
                ended += 1
                await self._deliver(
                    stream, {"type": "live.close", "detail": "Access to this stream ended."}
                )
        return ended

    async def _heartbeat(self) -> None:
        for stream in list(self.streams.values()):
            if stream.ready:
                try:
                    await stream.consumer.send_json({"type": "heartbeat"})
                except Exception:
                    logger.debug("heartbeat failed", exc_info=True)

    async def _rejoin(self) -> None:
        for group in list(self.groups.values()):
            if group.reader is not None and not group.reader.done():
                try:
                    await self.layer.group_add(group.name, group.channel)
                except Exception:
                    logger.warning("could not refresh group %s", group.name, exc_info=True)


def _failed(group: _Group) -> bool:
    """Whether a group's membership is gone: its join failed or its reader ended."""
    joined = group.joined
    if joined is None or not joined.done():
        return False
    if joined.cancelled() or joined.exception() is not None:
        return True
    return group.reader is not None and group.reader.done()


def _verdicts(consumers) -> list[bool]:
    """Each stream's still_authorized(), asked once per distinct link or session."""
    known: dict = {}
    out = []
    for consumer in consumers:
        key = consumer.authorization_key()
        if key not in known:
            known[key] = bool(consumer.still_authorized())
        out.append(known[key])
    return out


_hubs: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LiveHub]" = weakref.WeakKeyDictionary()


def live_hub() -> LiveHub | None:
    """The hub of the running loop and the configured layer (None without a layer)."""
    layer = get_channel_layer()
    if layer is None:
        return None
    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is None or hub.layer is not layer:
        # A new layer (settings changed, as in tests): streams already open keep the hub
        # they subscribed through.
        hub = _hubs[loop] = LiveHub(layer)
    return hub
