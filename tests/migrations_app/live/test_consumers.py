"""Websocket subscribers: authorization, snapshot first, numbered events, junk input.

Run against the configured channel layer (Redis when REDIS_URL is set, as in CI) and
against the in-process layer explicitly.
"""

import os

import pytest
from asgiref.sync import sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser
from django.test import override_settings

from dashboard.asgi import application
from migrations_app.live.events import run_event
from migrations_app.models import MigrationPlan, PlanRun
from migrations_app.routing import websocket_urlpatterns
from tests.conftest import skip_or_fail

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]

INPROCESS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


def redis_layer():
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    try:
        import redis

        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except Exception as exc:
        skip_or_fail(f"Redis at {url} is not reachable: {exc}")
    return {
        "default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [url]}}
    }


@pytest.fixture(params=["inprocess", "redis"])
def layer(request):
    config = INPROCESS if request.param == "inprocess" else redis_layer()
    with override_settings(CHANNEL_LAYERS=config):
        from channels.layers import channel_layers

        channel_layers.backends.clear()
        yield request.param
        channel_layers.backends.clear()


def make_plan_and_run(user):
    plan = MigrationPlan.objects.create(name="p", author=user, status="running")
    run = PlanRun.objects.create(plan=plan)
    return plan, run


def communicator(path, user):
    comm = WebsocketCommunicator(URLRouter(websocket_urlpatterns), path)
    comm.scope["user"] = user
    return comm


async def test_it_sends_a_snapshot_then_numbered_events(layer, make_user):
    user = await sync_to_async(make_user)("v", "viewer")
    plan, run = await sync_to_async(make_plan_and_run)(user)
    comm = communicator(f"/ws/plans/{plan.pk}/", user)
    connected, _ = await comm.connect()
    assert connected
    snapshot = await comm.receive_json_from(timeout=5)
    assert snapshot["type"] == "snapshot" and snapshot["plan"]["id"] == plan.pk
    assert snapshot["last_seq"] == 0
    await sync_to_async(run_event)(run=run, kind="item.phase", payload={"phase": "transfer"})
    await sync_to_async(run_event)(run=run, kind="item.phase", payload={"phase": "verify"})
    first = await comm.receive_json_from(timeout=5)
    second = await comm.receive_json_from(timeout=5)
    assert (first["type"], first["seq"], second["seq"]) == ("event", 1, 2)
    assert second["payload"] == {"phase": "verify"}
    await comm.disconnect()


async def test_it_refuses_anonymous_and_roleless_subscribers(make_user):
    plan, _ = await sync_to_async(make_plan_and_run)(None)
    comm = communicator(f"/ws/plans/{plan.pk}/", AnonymousUser())
    connected, code = await comm.connect()
    assert not connected and code == 4403
    nobody = await sync_to_async(make_user)("nobody")  # no role at all
    comm = communicator("/ws/dashboard/", nobody)
    connected, _ = await comm.connect()
    assert not connected


async def test_it_refuses_a_foreign_origin(make_user):
    comm = WebsocketCommunicator(
        application, "/ws/dashboard/", headers=[(b"origin", b"http://evil.example")]
    )
    connected, _ = await comm.connect()
    assert not connected


async def test_it_answers_junk_and_keeps_the_connection_but_closes_on_huge_frames(make_user):
    user = await sync_to_async(make_user)("v", "viewer")
    comm = communicator("/ws/dashboard/", user)
    assert (await comm.connect())[0]
    assert (await comm.receive_json_from(timeout=5))["type"] == "snapshot"
    await comm.send_to(text_data="{not json")
    assert (await comm.receive_json_from(timeout=5))["type"] == "error"
    await comm.send_json_to({"type": "start", "plan": 1})
    reply = await comm.receive_json_from(timeout=5)
    assert reply["type"] == "error" and "read-only" in reply["detail"]
    await comm.send_json_to({"type": "ping"})
    assert (await comm.receive_json_from(timeout=5))["type"] == "pong"
    await comm.send_to(text_data="x" * 100_000)
    output = await comm.receive_output(timeout=5)
    assert output["type"] == "websocket.close" and output["code"] == 1009


def make_link(user, **kwargs):
    from migrations_app.sharing.services import share_link_create

    plan, run = make_plan_and_run(user)
    link, token = share_link_create(plan=plan, actor=user, **kwargs)
    return plan, run, link, token


async def test_it_streams_a_status_link_redacted_and_closes_it_when_revoked(make_user):
    import asyncio

    from migrations_app.sharing.services import share_link_revoke

    user = await sync_to_async(make_user)("op", "operator")
    plan, run, link, token = await sync_to_async(make_link)(user)
    comm = communicator(f"/ws/status/{token}/", AnonymousUser())
    assert (await comm.connect())[0]
    snapshot = await comm.receive_json_from(timeout=5)
    assert snapshot["type"] == "snapshot" and snapshot["plan"]["id"] == plan.pk
    await sync_to_async(run_event)(run=run, kind="item.phase", payload={"phase": "transfer"})
    assert (await comm.receive_json_from(timeout=5))["seq"] == 1
    started = asyncio.get_running_loop().time()
    await sync_to_async(share_link_revoke)(link=link, actor=user)
    closed = await comm.receive_json_from(timeout=5)
    assert closed["type"] == "closed"
    output = await comm.receive_output(timeout=5)
    assert output["type"] == "websocket.close"
    assert asyncio.get_running_loop().time() - started < 5
    # a revoked token cannot subscribe again
    again = communicator(f"/ws/status/{token}/", AnonymousUser())
    assert not (await again.connect())[0]


async def test_it_refuses_unknown_and_expired_status_tokens(make_user):
    import datetime as dt

    from django.utils import timezone

    user = await sync_to_async(make_user)("op", "operator")
    past = timezone.now() - dt.timedelta(minutes=1)
    _, _, _, token = await sync_to_async(make_link)(user, expires_at=past)
    for candidate in (token, "not-a-token"):
        comm = communicator(f"/ws/status/{candidate}/", AnonymousUser())
        connected, code = await comm.connect()
        assert not connected and code == 4403


async def test_it_closes_a_stream_whose_link_expires_while_open(make_user):
    import datetime as dt

    from django.utils import timezone

    from migrations_app.models.sharing import ShareLink

    user = await sync_to_async(make_user)("op", "operator")
    _, _, link, token = await sync_to_async(make_link)(user)
    comm = communicator(f"/ws/status/{token}/", AnonymousUser())
    assert (await comm.connect())[0]
    await comm.receive_json_from(timeout=5)
    await sync_to_async(ShareLink.objects.filter(pk=link.pk).update)(
        expires_at=timezone.now() - dt.timedelta(seconds=1)
    )
    assert (await comm.receive_json_from(timeout=5))["type"] == "closed"
