"""The scheduler's wait on Redis: Redis ends a blocking wait on its own clock tick, so the
backend ends it a tick early and sleeps the rest itself. It must still never end before its
time without cause, and a sooner job must still end it at once."""

from __future__ import annotations

import time

from asyncmq.backends.redis import RedisBackend


async def test_a_schedule_wait_without_a_marker_lasts_its_whole_timeout(
    backend: RedisBackend, queue_name: str
) -> None:
    for timeout_s in (0.05, 0.25):  # shorter than Redis' tick, and longer
        start = time.monotonic()
        await backend.wait_for_schedule(queue_name, timeout_s)
        assert time.monotonic() - start >= timeout_s


async def test_a_marker_ends_a_schedule_wait_before_its_timeout(
    backend: RedisBackend, queue_name: str
) -> None:
    await backend.client.lpush(f"{backend.prefix}:{{{queue_name}}}:schedule", "1")
    start = time.monotonic()
    await backend.wait_for_schedule(queue_name, 30)
    assert time.monotonic() - start < 30
