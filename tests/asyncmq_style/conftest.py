"""Fixtures of the AsyncMQ-style examples: the test Redis, each test on queues of its own."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

import pytest

from asyncmq.backends.redis import RedisBackend

REDIS_URL = os.environ.get("ASYNCMQ_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
def name() -> str:
    """A queue name of this test's own: the examples' backends share the test Redis."""
    return f"asyncmq-style-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def redis_backend(name: str) -> AsyncIterator[RedisBackend]:
    """`RedisBackend(redis_url=...)` as the examples build it (default prefix), on the test
    Redis; the queues the test used (`name`, `name-*`) are deleted afterwards."""
    from redis.exceptions import ConnectionError as RedisConnectionError

    backend = RedisBackend(redis_url=REDIS_URL)
    try:
        await backend.connect()
        await backend.client.ping()
    except (RedisConnectionError, OSError) as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"no Redis at {REDIS_URL}: {exc}")
    yield backend
    for queue in await backend.queues():
        if queue == name or queue.startswith(f"{name}-"):
            await backend.delete_queue(queue)
    await backend.close()
