"""Fixtures of the Redis resilience tests.

The tests use the backend's default key prefix, because a worker started with
`asyncmq worker start --backend URL` cannot choose another; each test works on a queue of
its own instead, and its keys (`asyncmq:{queue}:*`, and the queue's entry in
`asyncmq:queues`) are deleted afterwards. Fixtures that run workers are torn down before
the backend they use: a test asks for `backend` before `start_worker` or `spawn_worker`.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import IO, Any

import pytest

import tests.redis.app  # noqa: F401  (registers the tasks in-process workers run)
from asyncmq.backends.redis import RedisBackend
from tests.cli.helpers import asyncmq_command
from tests.redis.app import HOLDS
from tests.redis.support import WAIT_S, MakeBackend, RedisServer, SpawnWorker, missing

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
async def spawn_worker(backend: RedisBackend, redis_url: str, tmp_path: Path) -> AsyncIterator[SpawnWorker]:
    """`process = await spawn_worker(queue_name, lease_s=1.0)`: `asyncmq worker start` in a
    child process, its output in `tmp_path`. Every child is killed and reaped after the test."""
    children: list[tuple[asyncio.subprocess.Process, IO[bytes]]] = []

    async def spawn(queue: str, *, lease_s: float, concurrency: int = 10) -> asyncio.subprocess.Process:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "ASYNCMQ_LEASE_SECONDS": repr(lease_s)}
        output = (tmp_path / f"worker-{len(children)}.log").open("wb")
        try:
            process = await asyncio.create_subprocess_exec(
                *asyncmq_command(),
                "worker", "start", queue,
                "--backend", redis_url,
                "--app", "tests.redis.app",
                "--concurrency", str(concurrency),
                cwd=ROOT,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=output,
                stderr=asyncio.subprocess.STDOUT,
            )  # fmt: skip
        except BaseException:
            output.close()
            raise
        children.append((process, output))
        return process

    yield spawn
    for process, output in children:
        if process.returncode is None:
            process.kill()
        await asyncio.wait_for(process.wait(), WAIT_S)
        output.close()


@pytest.fixture
async def redis_server(tmp_path: Path) -> AsyncIterator[RedisServer]:
    """A started redis-server of the test's own (AOF on), killed after the test."""
    server = RedisServer(tmp_path)
    try:
        await server.start()
        yield server
    finally:
        await server.kill()


@pytest.fixture(autouse=True)
def _forget_holds() -> Iterator[None]:
    yield
    HOLDS.clear()
