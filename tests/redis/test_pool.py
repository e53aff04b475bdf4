"""The connection pool follows the worker's concurrency (docs/tuning.md, the Redis connection pool)."""

from __future__ import annotations

import asyncio

from asyncmq.backends.redis import RedisBackend
from asyncmq.queues import Queue


async def test_a_worker_with_many_slots_grows_the_connection_pool_to_fit(
    backend: RedisBackend, queue_name: str
) -> None:
    assert backend.max_connections == 64
    worker = Queue(queue_name, backend=backend).worker(concurrency=100, burst=True, handle_signals=False)
    await asyncio.wait_for(worker.run(), 10)
    assert backend.max_connections == 108
    assert backend.client.connection_pool.max_connections == 108


async def test_a_small_worker_leaves_the_pool_as_configured(backend: RedisBackend, queue_name: str) -> None:
    worker = Queue(queue_name, backend=backend).worker(concurrency=10, burst=True, handle_signals=False)
    await asyncio.wait_for(worker.run(), 10)
    assert backend.max_connections == 64
