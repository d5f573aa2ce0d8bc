"""API tokens on websockets (dashboard.live.token_auth) through the real ASGI stack: a valid
`Authorization: Token` header opens a plan stream, a wrong, malformed or inactive one is
refused even with a valid session, the origin check still applies, and a token stream
closes within 5 s of the token's rotation or revocation."""

import time

import pytest
from asgiref.sync import sync_to_async

from dashboard.accounts.tokens import api_token_revoke, api_token_rotate, api_token_user
from dashboard.asgi import application
from dashboard.live.token_auth import token_from_headers
from tests.security.test_websocket_access import (
    CLOSE_WITHIN,
    ORIGIN,
    closes_within,
    running_plan,
    signed_in_cookie,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]


def token_socket(path: str, key: str, *, origin=ORIGIN, cookie: str | None = None):
    from channels.testing import WebsocketCommunicator

    headers = [(b"authorization", f"Token {key}".encode())]
    if origin:
        headers.append(origin)
    if cookie:
        headers.append((b"cookie", f"sessionid={cookie}".encode()))
    return WebsocketCommunicator(application, path, headers=headers)


def viewer_with_plan(make_user):
    user = make_user("v", "viewer")
    return user, running_plan(user), api_token_rotate(user=user)[0]


async def test_it_opens_a_plan_stream_with_a_valid_token_header(make_user):
    user, plan, key = await sync_to_async(viewer_with_plan)(make_user)
    comm = token_socket(f"/ws/plans/{plan.pk}/", key)
    assert (await comm.connect())[0]
    snapshot = await comm.receive_json_from(timeout=5)
    assert snapshot["type"] == "snapshot"
    assert snapshot["plan"]["id"] == plan.pk
    await comm.disconnect()


async def test_it_refuses_a_wrong_malformed_or_foreign_origin_token(make_user):
    user, plan, key = await sync_to_async(viewer_with_plan)(make_user)
    _, cookie = await sync_to_async(signed_in_cookie)(user)
    path = f"/ws/plans/{plan.pk}/"
    refused = [
        token_socket(path, "0" * 40),
        token_socket(path, "not a key!"),
        token_socket(path, "a" * 500),
        # A wrong token is not rescued by a valid session cookie: the header wins.
        token_socket(path, "0" * 40, cookie=cookie),
        token_socket(path, key, origin=(b"origin", b"http://evil.example")),
        token_socket(path, key, origin=None),
    ]
    for comm in refused:
        connected, code = await comm.connect()
        assert not connected
        assert code in (4403, 1000, None), code


async def test_it_refuses_the_token_of_a_deactivated_or_roleless_user(make_user):
    def setup():
        nobody = make_user("nobody")
        gone = make_user("gone", "viewer")
        plan = running_plan(gone)
        keys = api_token_rotate(user=nobody)[0], api_token_rotate(user=gone)[0]
        gone.is_active = False
        gone.save(update_fields=["is_active"])
        return plan, keys

    plan, keys = await sync_to_async(setup)()
    for key in keys:
        connected, _ = await token_socket(f"/ws/plans/{plan.pk}/", key).connect()
        assert not connected


@pytest.mark.parametrize("end", ["rotate", "revoke"])
async def test_it_closes_a_token_stream_within_5s_when_the_token_ends(end, make_user):
    user, plan, key = await sync_to_async(viewer_with_plan)(make_user)
    comm = token_socket(f"/ws/plans/{plan.pk}/", key)
    assert (await comm.connect())[0]
    assert (await comm.receive_json_from(timeout=5))["type"] == "snapshot"
    if end == "rotate":
        await sync_to_async(api_token_rotate)(user=user)
    else:
        await sync_to_async(api_token_revoke)(user=user)
    started = time.monotonic()
    closed = await closes_within(comm, CLOSE_WITHIN)
    assert closed["code"] == 4410
    assert time.monotonic() - started < CLOSE_WITHIN
    assert await sync_to_async(api_token_user)(key) is None


async def test_it_reads_only_well_formed_token_headers():
    assert token_from_headers([(b"Authorization", b"Token abc123")]) == "abc123"
    assert token_from_headers([(b"authorization", b"token  abc123 ")]) == "abc123"
    assert token_from_headers([(b"authorization", b"Bearer abc123")]) is None
    assert token_from_headers([(b"cookie", b"sessionid=x")]) is None
    assert token_from_headers([(b"authorization", b"Token ")]) == ""
    assert token_from_headers([(b"authorization", b"Token a-b")]) == ""
