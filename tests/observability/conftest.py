"""Fixtures of the observability tests that need Redis: a backend on the default prefix
(worker processes started by the CLI use it), a queue of the test's own, its keys deleted after."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from asyncmq.backends.redis import RedisBackend
from tests.observability.otlp import OTLPReceiver, running_receiver

REDIS_URL = os.environ.get("ASYNCMQ_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
async def backend() -> AsyncIterator[RedisBackend]:
    backend = RedisBackend(REDIS_URL)
    try:
        await backend.connect()
        await backend.client.ping()
    except OSError as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"no Redis at {REDIS_URL}: {exc}")
    yield backend
    await backend.close()


@pytest.fixture
def queue_name() -> str:
    return f"observed-{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def cleanup(backend: RedisBackend, queue_name: str) -> AsyncIterator[None]:
    yield
    keys = [key async for key in backend.client.scan_iter(match=f"asyncmq:{{{queue_name}}}:*")]
    if keys:
        await backend.client.delete(*keys)
    await backend.client.srem("asyncmq:queues", queue_name)


@pytest.fixture
def receiver() -> Iterator[OTLPReceiver]:
    """An OTLP/HTTP trace receiver on loopback."""
    with running_receiver() as server:
        yield server
