"""The Redis channel layer as configured in settings, against the real Redis.

redis-py 8 reads with a 5 s socket timeout by default, the same 5 s channels_redis blocks
in BZPOPMIN while a channel is quiet: the read raced the server's empty answer and a
websocket whose plan had no event for 5 s died with "Timeout reading from Redis" (1011),
which the load test saw as stalled streams.
"""

import asyncio
import os

import pytest
from channels.layers import DEFAULT_CHANNEL_LAYER, channel_layers
from django.conf import settings

from tests.conftest import skip_or_fail

WAIT_SECONDS = 12  # more than two quiet BZPOPMIN rounds


@pytest.fixture
def redis_layer():
    if not os.environ.get("REDIS_URL") or "RedisChannelLayer" not in str(
        settings.CHANNEL_LAYERS["default"]["BACKEND"]
    ):
        skip_or_fail("REDIS_URL is not set (the Redis channel layer is not configured)")
    # A layer of its own: the shared one keeps connections bound to other tests' loops.
    return channel_layers.make_backend(DEFAULT_CHANNEL_LAYER)


def test_a_quiet_channel_keeps_waiting_and_then_receives(redis_layer):
    layer = redis_layer

    async def scenario():
        channel = await layer.new_channel()
        waiting = asyncio.ensure_future(layer.receive(channel))
        await asyncio.sleep(WAIT_SECONDS)
        # Still waiting, not failed: a quiet channel is not an error.
        assert not waiting.done(), waiting.exception() if waiting.done() else None
        await layer.send(channel, {"type": "ping", "n": 1})
        message = await asyncio.wait_for(waiting, timeout=10)
        await layer.flush()
        await layer.close_pools()
        return message

    assert asyncio.run(scenario()) == {"type": "ping", "n": 1}
