"""What the Redis resilience tests share besides fixtures: bounded waits, killing a named
client's connections, and a throwaway Redis server the tests may stop and restart."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, NoReturn

import pytest
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from asyncmq.backends.redis import RedisBackend
from asyncmq.queues import Queue

__all__ = [
    "POLL_S",
    "WAIT_S",
    "MakeBackend",
    "RedisServer",
    "SpawnWorker",
    "kill_connections",
    "missing",
    "wait_for_counts",
]

#: How long a test waits for something that should take well under a second.
WAIT_S = 10.0
#: The pause between two looks at the store while polling.
POLL_S = 0.01

#: The `make_backend` fixture: `backend = await make_backend(url, **options)`.
MakeBackend = Callable[..., Awaitable["RedisBackend"]]
#: The `start_worker` fixture: `task = await start_worker(worker)`.
#: The `spawn_worker` fixture: `process = await spawn_worker(queue_name, lease_s=1.0)`.
SpawnWorker = Callable[..., Awaitable[asyncio.subprocess.Process]]


def missing(message: str) -> NoReturn:
    """A server the test needs is missing: skip locally, fail in CI."""
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


async def wait_for_counts(
    queue: Queue, until: Callable[[dict[str, int]], bool], what: str, within_s: float = WAIT_S
) -> dict[str, int]:
    """Poll `queue.counts()` until `until(counts)` holds; fail after `within_s` saying `what`."""
    deadline = time.monotonic() + within_s
    while True:
        counts = await queue.counts()
        if until(counts):
            return counts
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {within_s}s for {what}; counts are {counts}")
        await asyncio.sleep(POLL_S)


async def kill_connections(admin: Any, name: str, *, blocked: bool = False) -> int:
    """`CLIENT KILL` every normal connection named `name` (only those blocked in a command
    such as BLPOP, with `blocked`); returns how many died. Scoped by name, unlike
    `CLIENT KILL TYPE normal SKIPME yes`, so other users of a shared server are spared."""
    killed = 0
    for client in await admin.client_list(_type="normal"):
        if client["name"] == name and (not blocked or "b" in client["flags"]):
            killed += int(await admin.client_kill_filter(_id=client["id"]))
    return killed


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class RedisServer:
    """A redis-server of the test's own on a free loopback port, persisting to an append-only
    file in `directory`, so it can be shut down and started again with its data."""

    def __init__(self, directory: Path) -> None:
        executable = shutil.which("redis-server")
        if executable is None:
            missing("redis-server is not installed: scripts/services.sh installs it")
        self.executable = executable
        self.directory = directory
        self.port = _free_port()
        self.process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def admin(self) -> Redis:
        """A client that never retries: a down server shows at once. Close it after use."""
        return Redis(host="127.0.0.1", port=self.port, retry=Retry(NoBackoff(), 0))

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            self.executable,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "yes",
            "--dir", str(self.directory),
            "--logfile", str(self.directory / "redis.log"),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + WAIT_S
        while not await self._answers():
            if self.process.returncode is not None or time.monotonic() > deadline:
                log = (self.directory / "redis.log").read_text(errors="replace")
                raise AssertionError(f"redis-server on port {self.port} did not start:\n{log}")
            await asyncio.sleep(POLL_S)

    async def _answers(self) -> bool:
        client = self.admin()
        try:
            return bool(await client.ping())  # type: ignore[misc]
        except (RedisConnectionError, OSError):
            return False
        finally:
            await client.aclose()

    async def shutdown(self) -> None:
        """`SHUTDOWN`: the server writes its append-only file out and exits."""
        assert self.process is not None
        client = self.admin()
        try:
            await client.shutdown()
        finally:
            await client.aclose()
        await asyncio.wait_for(self.process.wait(), WAIT_S)

    async def kill(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await asyncio.wait_for(self.process.wait(), WAIT_S)
