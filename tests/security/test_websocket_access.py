"""Websocket access through the real ASGI stack (origin check, session cookie, auth
middleware): refused when it must be, closed within 5 s when access ends while open, and
junk answered on every stream without a write.
"""

import asyncio
import time

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import Group
from django.test import Client

from dashboard.asgi import application
from dashboard.audit.models import AuditEvent
from migrations_app.models import MigrationPlan, PlanRun

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]

ORIGIN = (b"origin", b"http://testserver")
CLOSE_WITHIN = 5.0


def signed_in_cookie(user) -> tuple[Client, str]:
    client = Client()
    client.force_login(user)
    return client, client.cookies["sessionid"].value


def running_plan(user):
    plan = MigrationPlan.objects.create(name="ws", author=user, status="running")
    PlanRun.objects.create(plan=plan)
    return plan


def socket(path: str, cookie: str | None = None, origin=ORIGIN) -> WebsocketCommunicator:
    headers = [origin] if origin else []
    if cookie:
        headers.append((b"cookie", f"sessionid={cookie}".encode()))
    return WebsocketCommunicator(application, path, headers=headers)


async def closes_within(comm, seconds: float) -> dict:
    """Read until the server closes; fail if it has not within `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        left = deadline - time.monotonic()
        assert left > 0, f"the stream was still open after {seconds} s"
        output = await comm.receive_output(timeout=left)
        if output["type"] == "websocket.close":
            return output


async def test_it_refuses_a_foreign_or_missing_origin_even_with_a_valid_session(make_user):
    user = await sync_to_async(make_user)("v", "viewer")
    _, cookie = await sync_to_async(signed_in_cookie)(user)
    for origin in [(b"origin", b"http://evil.example"), (b"origin", b"null"), None]:
        comm = socket("/ws/dashboard/", cookie, origin=origin)
        connected, _ = await comm.connect()
        assert not connected, origin
    comm = socket("/ws/dashboard/", cookie)
    assert (await comm.connect())[0]
    await comm.disconnect()


async def test_it_refuses_anonymous_roleless_and_missing_plan_subscriptions(make_user):
    viewer = await sync_to_async(make_user)("v", "viewer")
    nobody = await sync_to_async(make_user)("nobody")
    plan = await sync_to_async(running_plan)(viewer)
    _, viewer_cookie = await sync_to_async(signed_in_cookie)(viewer)
    _, nobody_cookie = await sync_to_async(signed_in_cookie)(nobody)
    refused = [
        ("/ws/dashboard/", None),
        (f"/ws/plans/{plan.pk}/", None),
        ("/ws/dashboard/", nobody_cookie),
        (f"/ws/plans/{plan.pk}/", nobody_cookie),
        (f"/ws/plans/{plan.pk + 1000}/", viewer_cookie),
        (f"/ws/plans/{plan.pk}/", "forged-session-key"),
        ("/ws/status/not-a-token/", None),
    ]
    for path, cookie in refused:
        connected, code = await socket(path, cookie).connect()
        assert not connected, (path, cookie)
        assert code in (4403, 1000, None), (path, code)


async def test_it_closes_a_stream_within_5s_of_logout(make_user):
    user = await sync_to_async(make_user)("v", "viewer")
    plan = await sync_to_async(running_plan)(user)
    client, cookie = await sync_to_async(signed_in_cookie)(user)
    streams = [socket("/ws/dashboard/", cookie), socket(f"/ws/plans/{plan.pk}/", cookie)]
    for comm in streams:
        assert (await comm.connect())[0]
        assert (await comm.receive_json_from(timeout=5))["type"] == "snapshot"
    response = await sync_to_async(client.post)("/logout/")
    assert response.status_code in (200, 302)
    started = time.monotonic()
    for comm in streams:
        closed = await closes_within(comm, CLOSE_WITHIN - (time.monotonic() - started))
        assert closed["code"] == 4410
    # and the old cookie cannot open a new stream
    assert not (await socket("/ws/dashboard/", cookie).connect())[0]


def demote(user):
    user.groups.remove(Group.objects.get(name="viewer"))


def deactivate(user):
    user.is_active = False
    user.save(update_fields=["is_active"])


@pytest.mark.parametrize("change", [demote, deactivate], ids=["role removed", "deactivated"])
async def test_it_closes_a_stream_within_5s_of_losing_the_role(change, make_user):
    """An account demoted or deactivated by an admin stops reading live at once (the
    connect-time user object cached its roles: streams stayed open for hours)."""
    user = await sync_to_async(make_user)("v", "viewer")
    _, cookie = await sync_to_async(signed_in_cookie)(user)
    comm = socket("/ws/dashboard/", cookie)
    assert (await comm.connect())[0]
    assert (await comm.receive_json_from(timeout=5))["type"] == "snapshot"
    await sync_to_async(change)(user)
    closed = await closes_within(comm, CLOSE_WITHIN)
    assert closed["code"] == 4410


async def test_it_closes_a_status_stream_within_5s_of_revocation(make_user):
    from migrations_app.sharing.services import share_link_create, share_link_revoke

    operator = await sync_to_async(make_user)("op", "operator")
    plan = await sync_to_async(running_plan)(operator)
    link, token = await sync_to_async(share_link_create)(plan=plan, actor=operator)
    comm = socket(f"/ws/status/{token}/")
    assert (await comm.connect())[0]
    assert (await comm.receive_json_from(timeout=5))["type"] == "snapshot"
    await sync_to_async(share_link_revoke)(link=link, actor=operator)
    closed = await closes_within(comm, CLOSE_WITHIN)
    assert closed["code"] == 4410
    assert not (await socket(f"/ws/status/{token}/").connect())[0]


@pytest.mark.parametrize("path_kind", ["dashboard", "plan", "status"])
async def test_it_answers_junk_on_every_stream_and_writes_nothing(path_kind, make_user):
    from migrations_app.sharing.services import share_link_create

    user = await sync_to_async(make_user)("op", "operator")
    plan = await sync_to_async(running_plan)(user)
    _, token = await sync_to_async(share_link_create)(plan=plan, actor=user)
    _, cookie = await sync_to_async(signed_in_cookie)(user)
    path = {
        "dashboard": "/ws/dashboard/",
        "plan": f"/ws/plans/{plan.pk}/",
        "status": f"/ws/status/{token}/",
    }[path_kind]
    before = await sync_to_async(AuditEvent.objects.count)()
    comm = socket(path, None if path_kind == "status" else cookie)
    assert (await comm.connect())[0]
    assert (await comm.receive_json_from(timeout=5))["type"] == "snapshot"
    junk = [
        "{not json",
        "null",
        "[]",
        '"ping"',
        "1e999",
        '{"type": null}',
        '{"type": ["ping"]}',
        '{"type": "cancel", "plan": 1}',
        '{"type": "subscribe", "plan": 999999}',
        '{"type": "' + "x" * 3000 + '"}',
        "\ud800".encode("utf-8", "surrogatepass").decode("utf-8", "replace"),
    ]
    for text in junk:
        await comm.send_to(text_data=text)
        reply = await comm.receive_json_from(timeout=5)
        assert reply["type"] == "error", (text[:40], reply)
    await comm.send_to(bytes_data=b"\x00\xff\xfe binary junk")
    assert (await comm.receive_json_from(timeout=5))["type"] == "error"
    # still alive after all that
    await comm.send_json_to({"type": "ping"})
    assert (await comm.receive_json_from(timeout=5))["type"] == "pong"
    await comm.send_to(text_data="[" * 5000)
    closed = await closes_within(comm, CLOSE_WITHIN)
    assert closed["code"] == 1009
    await asyncio.sleep(0)
    plan_after = await sync_to_async(MigrationPlan.objects.get)(pk=plan.pk)
    assert plan_after.status == "running"
    assert await sync_to_async(AuditEvent.objects.count)() == before


def _scoped_viewer(make_user, site: str):
    from dashboard.accounts.roles import user_roles_set

    admin = make_user("ws-admin", "admin")
    user = make_user(f"ws-{site}")
    user_roles_set(actor=admin, user=user, roles={"viewer": [site]})
    return user


def _plan_in_site_a(user):
    from tests.factories import plan_make

    plan = plan_make(user)
    item = plan.items.get()
    from inventory.models import Host

    Host.objects.filter(pk__in=[item.source_host_id, item.destination_host_id]).update(
        group="site-a"
    )
    return plan


async def test_it_refuses_plan_streams_outside_a_scoped_role(make_user):
    """Roles scoped to host groups (issue 18): the plan stream of another group's plan is
    refused like a missing plan, the all-plans dashboard stream is refused to scoped roles."""
    outsider = await sync_to_async(_scoped_viewer)(make_user, "site-b")
    plan = await sync_to_async(_plan_in_site_a)(outsider)
    insider = await sync_to_async(make_user)("ws-inside")
    from dashboard.accounts.roles import user_roles_set

    await sync_to_async(user_roles_set)(actor=None, user=insider, roles={"viewer": ["site-a"]})
    _, outside_cookie = await sync_to_async(signed_in_cookie)(outsider)
    _, inside_cookie = await sync_to_async(signed_in_cookie)(insider)
    for path in (f"/ws/plans/{plan.pk}/", "/ws/dashboard/"):
        comm = socket(path, outside_cookie)
        connected, _ = await comm.connect()
        assert not connected, path
    comm = socket(f"/ws/plans/{plan.pk}/", inside_cookie)
    assert (await comm.connect())[0]
    await comm.disconnect()
