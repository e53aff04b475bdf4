"""Fixtures of the backend conformance suite: every test runs once per backend in `BACKENDS`.

To add a backend, add one entry to `BACKENDS`: a name (the test id) and a factory, an async
context manager yielding the backend, not yet connected. A server backend's factory should
`pytest.skip(...)` when its server is unreachable locally and fail in CI. Only the backend a
test asks for is built, and each test works on a queue of its own (`queue_name`), so many
tests can share one real server.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import pytest

from asyncmq.backends.base import BaseBackend
from asyncmq.core.event import Event, Payload, event_emitter
from asyncmq.queues import Queue
from asyncmq.worker import Worker
from tests.conformance.support import GATES, WAIT_S, EventRecorder, StartWorker

BackendFactory = Callable[[], AbstractAsyncContextManager[BaseBackend]]


@asynccontextmanager
async def _memory_backend() -> AsyncIterator[BaseBackend]:
    from asyncmq.backends.memory import InMemoryBackend

    yield InMemoryBackend()


def _server_url(variable: str, default: str | None) -> str:
    """The server to test against; missing, the test skips locally and fails in CI."""
    url = os.environ.get(variable, default)
    if url is None:
        message = f"{variable} is not set: scripts/test.sh starts this server"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return url


@asynccontextmanager
async def _redis_backend(url: str, cluster: bool) -> AsyncIterator[BaseBackend]:
    from redis.exceptions import ConnectionError as RedisConnectionError

    from asyncmq.backends.redis import RedisBackend

    prefix = f"asyncmq-test-{uuid.uuid4().hex[:8]}"
    backend = RedisBackend(url, prefix=prefix, cluster=cluster)
    try:
        await backend.connect()
        await backend.client.ping()
    except (RedisConnectionError, OSError) as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"no Redis at {url}: {exc}")
    try:
        yield backend
    finally:
        await backend.connect()
        keys = [key async for key in backend.client.scan_iter(match=f"{prefix}:*", count=1000)]
        for key in keys:  # one by one: in a cluster they live in different slots
            await backend.client.delete(key)
        await backend.close()


def _redis() -> AbstractAsyncContextManager[BaseBackend]:
    return _redis_backend(_server_url("ASYNCMQ_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"), cluster=False)


def _redis_cluster() -> AbstractAsyncContextManager[BaseBackend]:
    return _redis_backend(_server_url("ASYNCMQ_TEST_REDIS_CLUSTER_URL", None), cluster=True)


#: The single place to add a backend: test id -> factory.
BACKENDS: dict[str, BackendFactory] = {
    "memory": _memory_backend,
    "redis": _redis,
    "redis-cluster": _redis_cluster,
}


@pytest.fixture(params=list(BACKENDS))
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[BaseBackend]:
    """A connected backend of the kind in the test's id, closed after the test."""
    async with BACKENDS[request.param]() as built:
        await built.connect()
        try:
            yield built
        finally:
            await built.close()


@pytest.fixture
def queue_name() -> str:
    """A queue name no other test uses, so tests can share one server."""
    return f"conformance-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def make_queue(backend: BaseBackend, queue_name: str) -> Callable[..., Queue]:
    """Build a `Queue` on the test's backend and queue name with the given options. Two
    queues made here stand for two processes sharing the same queue."""

    def make(**options: Any) -> Queue:
        return Queue(queue_name, backend=backend, **options)

    return make


@pytest.fixture
def queue(make_queue: Callable[..., Queue]) -> Queue:
    return make_queue()


@pytest.fixture
async def events(queue_name: str) -> AsyncIterator[EventRecorder]:
    """Records the events of the test's queue; unsubscribes after the test."""
    recorder = EventRecorder(queue_name)
    recorder.subscribe()
    try:
        yield recorder
    finally:
        recorder.unsubscribe()


@pytest.fixture
async def start_worker() -> AsyncIterator[StartWorker]:
    """`task = await start_worker(worker)`: run a worker in the background, returning once it
    has started (so a `stop()` cannot be missed). Every worker still running is stopped and
    awaited after the test."""
    started: list[tuple[Worker, asyncio.Task[None]]] = []

    async def start(worker: Worker) -> asyncio.Task[None]:
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def on_started(payload: Payload) -> None:
            if payload["worker_id"] == worker.id and not ready.done():
                ready.set_result(None)

        event_emitter.on(Event.WORKER_STARTED, on_started)
        try:
            task = asyncio.create_task(worker.run(), name=f"test-worker-{worker.id}")
            started.append((worker, task))
            async with asyncio.timeout(WAIT_S):
                await asyncio.wait({task, ready}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            event_emitter.off(Event.WORKER_STARTED, on_started)
        if task.done():
            task.result()  # run() failed: raise its error here
        return task

    yield start
    for worker, _ in started:
        worker.stop()
    async with asyncio.timeout(WAIT_S * 2):
        outcomes = await asyncio.gather(*(task for _, task in started), return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome  # a worker crashed: the engine broke its promise to keep going


@pytest.fixture(autouse=True)
def _forget_gates() -> Iterator[None]:
    yield
    GATES.clear()
