"""What the Redis resilience tests share besides fixtures: bounded waits and killing a named
client's connections. A Redis of a test's own, to stop and restart, is in
tests/private_servers.py."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn

import pytest

from asyncmq.backends.redis import RedisBackend
from asyncmq.queues import Queue

__all__ = [
    "POLL_S",
    "WAIT_S",
    "MakeBackend",
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
