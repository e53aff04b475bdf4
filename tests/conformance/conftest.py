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
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress
from typing import Any

import pytest

from asyncmq.backends.base import BaseBackend
from asyncmq.queues import Queue
from tests.conformance.support import GATES, server_url

BackendFactory = Callable[[], AbstractAsyncContextManager[BaseBackend]]


@asynccontextmanager
async def _memory_backend() -> AsyncIterator[BaseBackend]:
    from asyncmq.backends.memory import InMemoryBackend

    yield InMemoryBackend()


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


#: One schema for the whole run (made by the first backend, dropped at the end): tests keep
#: apart by their queue names, as on the shared Redis.
POSTGRES_SCHEMA = f"asyncmq_test_{uuid.uuid4().hex[:8]}"


@asynccontextmanager
async def _postgres_backend() -> AsyncIterator[BaseBackend]:
    from asyncmq.backends.postgres import PostgresBackend
    from asyncmq.errors import ConfigurationError

    url = server_url("ASYNCMQ_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
    backend = PostgresBackend(url, schema=POSTGRES_SCHEMA)
    try:
        await backend.connect()
    except ConfigurationError as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"no PostgreSQL at {url}: {exc}")
    try:
        yield backend
    finally:
        await backend.close()


@pytest.fixture(scope="session", autouse=True)
def _drop_postgres_schema() -> Iterator[None]:
    yield
    url = os.environ.get("ASYNCMQ_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")

    async def drop() -> None:
        import asyncpg

        try:
            conn = await asyncpg.connect(url)
        except (OSError, asyncpg.PostgresError):
            return
        await conn.execute(f"DROP SCHEMA IF EXISTS {POSTGRES_SCHEMA} CASCADE")
        await conn.close()

    asyncio.run(drop())


#: One database for the whole run, dropped at the end, as the schema above.
MONGO_DATABASE = f"asyncmq_test_{uuid.uuid4().hex[:8]}"


@asynccontextmanager
async def _mongo_backend() -> AsyncIterator[BaseBackend]:
    from asyncmq.backends.mongo import MongoBackend

    url = server_url("ASYNCMQ_TEST_MONGO_URL", "mongodb://127.0.0.1:27017/?directConnection=true")
    backend = MongoBackend(url, database=MONGO_DATABASE)
    yield backend
    await backend.close()


@pytest.fixture(scope="session", autouse=True)
def _drop_mongo_database() -> Iterator[None]:
    yield
    url = os.environ.get("ASYNCMQ_TEST_MONGO_URL", "mongodb://127.0.0.1:27017/?directConnection=true")

    async def drop() -> None:
        from pymongo import AsyncMongoClient
        from pymongo.errors import PyMongoError

        client: AsyncMongoClient[Any] = AsyncMongoClient(url, serverSelectionTimeoutMS=2000)
        with suppress(PyMongoError):
            await client.drop_database(MONGO_DATABASE)
        await client.close()

    asyncio.run(drop())


def _redis() -> AbstractAsyncContextManager[BaseBackend]:
    return _redis_backend(server_url("ASYNCMQ_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"), cluster=False)


def _redis_cluster() -> AbstractAsyncContextManager[BaseBackend]:
    return _redis_backend(server_url("ASYNCMQ_TEST_REDIS_CLUSTER_URL", None), cluster=True)


#: The single place to add a backend: test id -> factory.
BACKENDS: dict[str, BackendFactory] = {
    "memory": _memory_backend,
    "redis": _redis,
    "redis-cluster": _redis_cluster,
    "postgres": _postgres_backend,
    "mongodb": _mongo_backend,
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


@pytest.fixture(autouse=True)
def _forget_gates() -> Iterator[None]:
    yield
    GATES.clear()
