"""Publishing live events to channel-layer groups, from any thread of any Ferry process.

The platform's one way to send a message to live subscribers. Three cases, one function:
- a worker thread inside the web process (the embedded default): the in-process layer's
  queues belong to the server's event loop, so the send is scheduled on that loop (the
  ASGI app records it through LoopRecordingApp);
- a worker process on Redis: the send runs on one long-lived publisher loop per process;
- inside an event loop already (tests, consumers): a plain async_to_sync call.
A broken layer is logged, never fatal: stored events let clients catch up over REST.
"""

import asyncio
import json
import logging
import os
import threading

from asgiref.sync import async_to_sync
from channels.layers import InMemoryChannelLayer, get_channel_layer

logger = logging.getLogger("ferry.live")

_server_loop: asyncio.AbstractEventLoop | None = None


def record_server_loop() -> None:
    """Remember the web server's event loop (called from inside the ASGI app)."""
    global _server_loop
    if _server_loop is None:
        _server_loop = asyncio.get_running_loop()


def server_loop() -> asyncio.AbstractEventLoop | None:
    """The web server's running event loop in this process, if there is one."""
    loop = _server_loop
    return loop if loop is not None and loop.is_running() else None


class LoopRecordingApp:
    """ASGI wrapper that records the server loop so worker threads can hand it events.

    The in-process channel layer keeps asyncio queues owned by the server's loop; waking
    them from a worker thread's own loop is not thread-safe (consumers would notice the
    message only when something else wakes the server loop), so publishers in worker
    threads schedule their sends on the server loop instead.
    """

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        record_server_loop()
        return await self.app(scope, receive, send)


def publish(groups: list[str], message: dict) -> None:
    """Send an event to channel-layer groups (live.event; the frame is encoded once here,
    not once per subscriber: a plan watched by 200 browsers would otherwise encode every
    event 200 times on the web server's event loop)."""
    text = json.dumps({"type": "event", **message}, default=str)
    for group in groups:
        _send(group, {"type": "live.event", "event": message, "text": text}, message.get("kind"))


def close_streams(group: str, detail: str) -> None:
    """End every live stream of a group (live.close): its authorization ended."""
    _send(group, {"type": "live.close", "detail": detail}, "close")


def _send(group: str, body: dict, what) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    loop = server_loop()
    try:
        if loop is not None and not _inside(loop):
            # A worker thread inside the web process: send on the server's loop.
            asyncio.run_coroutine_threadsafe(layer.group_send(group, body), loop).result(5)
        elif loop is None and not isinstance(layer, InMemoryChannelLayer):
            # A worker process (Redis): send on this process's publisher loop.
            asyncio.run_coroutine_threadsafe(
                layer.group_send(group, body), _publisher_loop()
            ).result(5)
        else:
            async_to_sync(layer.group_send)(group, body)
    except Exception:  # the layer (Redis) may be down; stored events let clients catch up
        logger.warning("could not publish %s to %s", what, group, exc_info=True)


_publisher = None
_publisher_lock = threading.Lock()


def _publisher_loop() -> asyncio.AbstractEventLoop:
    """One long-lived event loop per process for publishing from code outside a server.

    async_to_sync would run every send on a fresh loop, and channels_redis keeps its
    connections per loop, so each event paid for a new Redis connection (5 ms typical,
    65 ms at p95 on a busy machine). The pid check covers forked workers (RQ), which
    inherit the loop object but not its thread.
    """
    global _publisher
    with _publisher_lock:
        if _publisher is None or _publisher[0] != os.getpid() or not _publisher[2].is_alive():
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="ferry-publisher", daemon=True)
            thread.start()
            _publisher = (os.getpid(), loop, thread)
        return _publisher[1]


def _inside(loop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False
