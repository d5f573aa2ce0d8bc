"""A websocket's snapshot read on the shared thread pool hands its pooled PostgreSQL
connection back.

Regression: the threads that read snapshots kept a connection checked out, one more with
every event loop, and a thread that ended kept it for good; a long test run of websocket
tests (each its own loop) ran the pool of 20 dry ("couldn't get a connection after 30 s")."""

import asyncio

import pytest
from django.db import connection

from tests.conftest import skip_or_fail
from tests.migrations_app.live.test_consumers import communicator

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


async def _subscribe_once(user) -> str:
    comm = communicator("/ws/dashboard/", user)
    assert (await comm.connect())[0]
    first = (await comm.receive_json_from(timeout=5))["type"]
    await comm.disconnect()
    return first


def test_snapshots_on_many_event_loops_leave_the_pool_whole(make_user):
    if connection.vendor != "postgresql":
        skip_or_fail("the connection pool is PostgreSQL's (DATABASE_URL=postgres://...)")
    user = make_user("v", "viewer")

    def checked_out() -> int:
        stats = connection.pool.get_stats()
        return stats.get("pool_size", 0) - stats.get("pool_available", 0)

    # Other tests of this process may hold connections of their own: count what these
    # subscriptions leave behind.
    before = checked_out()
    for _ in range(25):  # more loops (each with its own executor threads) than the pool holds
        assert asyncio.run(_subscribe_once(user)) == "snapshot"
    # This thread's own connection, or one a thread of another test takes meanwhile, may be
    # out; the leak kept one per subscription (25, so the pool of 20 ran dry).
    assert checked_out() - before <= 3, connection.pool.get_stats()
