"""Fixtures of the Redis resilience tests.

The tests use the backend's default key prefix, because a worker started with
`asyncmq worker start --backend URL` cannot choose another; each test works on a queue of
its own instead, and its keys (`asyncmq:{queue}:*`, and the queue's entry in
`asyncmq:queues`) are deleted afterwards. Fixtures that run workers are torn down before
the backend they use: a test asks for `backend` before `start_worker`.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

import tests.redis.app  # noqa: F401  (registers the tasks in-process workers run)
from asyncmq.backends.redis import RedisBackend
from tests.private_servers import RedisServer
from tests.redis.app import HOLDS
from tests.redis.support import MakeBackend, missing

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def redis_url() -> str:
    """The shared Redis server (`make_backend` skips the test when it is down, or fails it in CI)."""
    return os.environ.get("ASYNCMQ_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
def queue_name() -> str:
    """A queue name no other test uses, so tests can share one server and one key prefix."""
    return f"resilience-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def make_backend() -> AsyncIterator[MakeBackend]:
    """`await make_backend(url, **options)`: a connected `RedisBackend`, closed after the test."""
    from redis.exceptions import ConnectionError as RedisConnectionError

    built: list[RedisBackend] = []

    async def make(url: str, **options: Any) -> RedisBackend:
        backend = RedisBackend(url, **options)
        built.append(backend)
        try:
            await backend.connect()
            await backend.client.ping()
        except (RedisConnectionError, OSError) as exc:
            missing(f"no Redis at {url}: {exc}")
        return backend

    yield make
    for backend in built:
        await backend.close()


@pytest.fixture
async def backend(make_backend: MakeBackend, redis_url: str, queue_name: str) -> AsyncIterator[RedisBackend]:
    """The shared server with the default prefix; the test queue's keys are deleted afterwards."""
    backend = await make_backend(redis_url)
    try:
        yield backend
    finally:
        client = backend.client
        pattern = f"{backend.prefix}:{{{queue_name}}}:*"
        keys = [key async for key in client.scan_iter(match=pattern, count=1000)]
        if keys:
            await client.delete(*keys)
        await client.srem(f"{backend.prefix}:queues", queue_name)


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A started redis-server of the test's own (AOF on), removed after the test."""
    server = RedisServer()
    try:
        server.start()
        yield server
    finally:
        server.remove()


@pytest.fixture(autouse=True)
def _forget_holds() -> Iterator[None]:
    yield
    HOLDS.clear()
