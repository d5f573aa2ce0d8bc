"""The per-process live hub: one layer membership per group, fanned out to local streams."""

import asyncio

import pytest
from asgiref.sync import sync_to_async
from channels.layers import InMemoryChannelLayer
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser

from dashboard.live.hub import LiveHub
from migrations_app.live.events import plan_group, run_event
from migrations_app.live.redaction import status_group
from tests.migrations_app.live.test_consumers import communicator, layer, make_link  # noqa: F401

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]


class FakeStream:
    """Records what the hub hands it, like a consumer would send it."""

    def __init__(self, key="k", allowed=True):
        self.got = []
        self.key = key
        self.allowed = allowed
        self.checks = 0

    async def live_event(self, message):
        self.got.append(message["text"])

    async def live_close(self, message):
        self.got.append("closed")

    async def websocket_disconnect(self, message):  # must never be reachable from a group
        self.got.append("disconnect")

    async def send_json(self, data):
        self.got.append(data["type"])

    def authorization_key(self):
        return self.key

    def still_authorized(self):
        self.checks += 1
        return self.allowed


def event(text):
    return {"type": "live.event", "event": {}, "text": text}


async def test_it_holds_events_until_the_snapshot_is_out_then_keeps_their_order():
    memory = InMemoryChannelLayer()
    hub = LiveHub(memory)
    stream = FakeStream()
    await hub.subscribe(stream, ["plan.1"])
    await memory.group_send("plan.1", event("1"))
    await memory.group_send("plan.1", event("2"))
    await asyncio.sleep(0.05)
    assert stream.got == []  # the snapshot has not been sent yet
    await hub.release(stream)
    await memory.group_send("plan.1", event("3"))
    await asyncio.sleep(0.05)
    assert stream.got == ["1", "2", "3"]
    await hub.unsubscribe(stream)


async def test_it_joins_a_group_once_per_process_and_leaves_with_the_last_stream():
    memory = InMemoryChannelLayer()
    hub = LiveHub(memory)
    streams = [FakeStream() for _ in range(5)]
    for stream in streams:
        await hub.subscribe(stream, ["plan.1", "dashboard"])
        await hub.release(stream)
    assert len(memory.groups["plan.1"]) == 1 and len(memory.groups["dashboard"]) == 1
    await memory.group_send("plan.1", event("a"))
    await asyncio.sleep(0.05)
    assert [s.got for s in streams] == [["a"]] * 5
    for stream in streams[:4]:
        await hub.unsubscribe(stream)
    assert len(memory.groups["plan.1"]) == 1
    await hub.unsubscribe(streams[4])
    assert not memory.groups.get("plan.1") and not memory.groups.get("dashboard")
    assert hub.ticker is None


async def test_it_ignores_group_messages_that_are_not_live_events_or_closes():
    memory = InMemoryChannelLayer()
    hub = LiveHub(memory)
    stream = FakeStream()
    await hub.subscribe(stream, ["plan.1"])
    await hub.release(stream)
    await memory.group_send("plan.1", {"type": "websocket.disconnect", "code": 1000})
    await memory.group_send("plan.1", {"type": "live.close", "detail": "revoked"})
    await memory.group_send("plan.1", event("after close"))
    await asyncio.sleep(0.05)
    assert stream.got == ["closed"]  # and nothing after it: a closing stream is dropped
    assert stream not in hub.streams


async def test_it_reauthorizes_once_per_link_and_closes_only_streams_that_lost_access():
    hub = LiveHub(InMemoryChannelLayer())
    kept = [FakeStream(key="link-1") for _ in range(3)]
    ended = [FakeStream(key="link-2", allowed=False) for _ in range(2)]
    for stream in kept + ended:
        await hub.subscribe(stream, ["plan.1"])
        await hub.release(stream)
    assert await hub.reauthorize() == 2
    assert sum(s.checks for s in kept) == 1 and sum(s.checks for s in ended) == 1
    assert [s.got for s in kept] == [[]] * 3
    assert [s.got for s in ended] == [["closed"]] * 2
    for stream in kept:
        await hub.unsubscribe(stream)


async def test_it_fans_one_event_out_to_many_status_streams_and_closes_them_all_on_revoke(
    layer,  # noqa: F811
    make_user,
):
    from migrations_app.sharing.services import share_link_revoke

    user = await sync_to_async(make_user)("op", "operator")
    plan, run, link, token = await sync_to_async(make_link)(user)
    comms: list[WebsocketCommunicator] = []
    for _ in range(5):
        comm = communicator(f"/ws/status/{token}/", AnonymousUser())
        assert (await comm.connect())[0]
        assert (await comm.receive_json_from(timeout=5))["type"] == "snapshot"
        comms.append(comm)
    await sync_to_async(run_event)(run=run, kind="item.phase", payload={"phase": "transfer"})
    for comm in comms:
        got = await comm.receive_json_from(timeout=5)
        assert (got["type"], got["seq"], got["plan"]) == ("event", 1, plan.pk)
    if layer == "inprocess":
        from channels.layers import get_channel_layer

        # One hub subscription for all five streams, on the status links' own group (M4).
        assert len(get_channel_layer().groups[status_group(plan.pk)]) == 1
        assert not get_channel_layer().groups.get(plan_group(plan.pk))
    await sync_to_async(share_link_revoke)(link=link, actor=user)
    for comm in comms:
        assert (await comm.receive_json_from(timeout=5))["type"] == "closed"
        assert (await comm.receive_output(timeout=5))["type"] == "websocket.close"


class BrokenLayer(InMemoryChannelLayer):
    """A layer whose receive fails, as channels_redis does when Redis goes away."""

    async def receive(self, channel):
        await asyncio.sleep(0.01)
        raise ConnectionError("Connection closed by server.")


async def test_it_closes_streams_with_a_reconnectable_code_when_the_layer_is_lost():
    hub = LiveHub(BrokenLayer())
    stream = FakeStream()
    closes = []

    async def close(code=None):
        closes.append(code)

    stream.close = close
    await hub.subscribe(stream, ["plan.1"])
    await hub.release(stream)
    await asyncio.sleep(0.1)
    # Daphne can only send 1000 or 3000-4999; the page reconnects on all but 4403/4410.
    assert len(closes) == 1 and 3000 <= closes[0] <= 4999 and closes[0] not in (4403, 4410)
    assert stream not in hub.streams and "plan.1" not in hub.groups
