"""Enqueueing in the caller's transaction: the job exists, and wakes a worker, only if the
caller's transaction commits."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from asyncmq.backends.memory import InMemoryBackend
from asyncmq.backends.postgres import PostgresBackend
from asyncmq.errors import ConfigurationError
from asyncmq.queues import Queue
from tests.conformance.support import noop


async def test_a_job_added_in_a_rolled_back_transaction_never_exists_nor_wakes_a_worker(
    backend: PostgresBackend, conn: asyncpg.Connection
) -> None:
    queue = Queue("orders", backend=backend)
    await backend.wait_for_jobs("orders", 0)  # opens the LISTEN; a first wait returns at once
    woken = asyncio.create_task(backend.wait_for_jobs("orders", 0.5))
    await asyncio.sleep(0)  # the waiter is listening

    transaction = conn.transaction()
    await transaction.start()
    job_id = await queue.add(noop.name, connection=conn)
    await queue.add_bulk([{"task_id": noop.name}], connection=conn)
    await transaction.rollback()

    started = asyncio.get_running_loop().time()
    await woken
    assert asyncio.get_running_loop().time() - started > 0.3  # it waited out its timeout
    assert await backend.get_job("orders", job_id) is None
    assert (await queue.counts())["waiting"] == 0


async def test_a_job_added_in_a_committed_transaction_is_there_and_wakes_a_worker_at_commit(
    backend: PostgresBackend, conn: asyncpg.Connection
) -> None:
    queue = Queue("orders", backend=backend)
    await backend.wait_for_jobs("orders", 0)  # opens the LISTEN; a first wait returns at once
    async with conn.transaction():
        job_id = await noop.options(connection=conn, queue="orders").enqueue(backend)
        assert await backend.get_job("orders", job_id) is None  # not before the commit
        woken = asyncio.create_task(backend.wait_for_jobs("orders", 5))
        await asyncio.sleep(0.05)
        assert not woken.done()

    await asyncio.wait_for(woken, 2)
    assert (await backend.get_job("orders", job_id)) is not None
    assert await queue.worker().process() is True


async def test_a_backend_without_transactions_refuses_a_connection_by_name() -> None:
    queue = Queue("orders", backend=InMemoryBackend())
    with pytest.raises(
        ConfigurationError, match="the memory backend cannot enqueue in a caller's transaction"
    ):
        await queue.add(noop.name, connection=object())
    assert (await queue.counts())["waiting"] == 0


async def test_a_deduplicated_job_added_in_a_rolled_back_transaction_leaves_its_key_free(
    backend: PostgresBackend, conn: asyncpg.Connection
) -> None:
    queue = Queue("orders", backend=backend)
    transaction = conn.transaction()
    await transaction.start()
    rolled_back = await queue.add(noop.name, connection=conn, deduplication={"id": "order:1"})
    assert await queue.add(noop.name, connection=conn, deduplication={"id": "order:1"}) == rolled_back
    await transaction.rollback()

    assert await queue.get_deduplication_job_id("order:1") is None
    stored = await queue.add(noop.name, deduplication={"id": "order:1"})
    assert stored != rolled_back
    assert (await queue.counts())["waiting"] == 1


async def test_a_deduplicated_job_added_in_a_committed_transaction_holds_its_key_from_the_commit(
    backend: PostgresBackend, conn: asyncpg.Connection
) -> None:
    queue = Queue("orders", backend=backend)
    async with conn.transaction():
        first = await queue.add(noop.name, connection=conn, deduplication={"id": "order:1"})
        # Another producer of the key waits for this transaction, then sees its job.
        racing = asyncio.create_task(queue.add(noop.name, deduplication={"id": "order:1"}))
        await asyncio.sleep(0.05)
        assert not racing.done()

    assert await asyncio.wait_for(racing, 5) == first
    assert (await queue.counts())["waiting"] == 1
