"""Dependencies on PostgreSQL where they meet concurrency: a parent ending while its child is
being added releases the child whichever commits first, and a blocked job holds its
deduplication key."""

from __future__ import annotations

import asyncio
import time

import asyncpg

from asyncmq.backends.postgres import PostgresBackend
from asyncmq.job import JobState
from asyncmq.queues import Queue
from asyncmq.transitions import Retention
from tests.conformance.support import noop


async def _until_waiting_on_a_lock(conn: asyncpg.Connection, schema: str) -> None:
    """Until a statement on `schema` waits for a row lock (polled: no fixed sleep). In a
    transaction, the activity view is read once unless its snapshot is cleared."""
    for _ in range(1000):
        await conn.execute("SELECT pg_stat_clear_snapshot()")
        if await conn.fetchval(
            "SELECT count(*) > 0 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE $1",
            f"%{schema}.%",
        ):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("no statement waited for the row lock")


async def test_a_child_added_while_its_parent_finishes_reads_the_parents_end(
    backend: PostgresBackend, conn: asyncpg.Connection, schema: str
) -> None:
    queue = Queue("flows", backend=backend)
    parent = await queue.add(noop.name)
    async with conn.transaction():  # a finish in progress: the parent's row is locked
        await conn.execute(
            f"UPDATE {schema}.jobs SET status = 'completed', result = '5', finished_at = $2 WHERE id = $1",
            parent,
            time.time(),
        )
        adding = asyncio.create_task(queue.add(noop.name, depends_on=[parent]))
        await _until_waiting_on_a_lock(conn, schema)
    child = await adding
    job = await queue.get_job(child)
    assert job is not None
    assert job.status is JobState.WAITING
    assert job.deps is not None
    assert job.deps["results"] == {parent: 5}


async def test_a_parent_finished_while_its_child_is_added_releases_the_child(
    backend: PostgresBackend, conn: asyncpg.Connection, schema: str
) -> None:
    queue = Queue("flows", backend=backend)
    parent = await queue.add(noop.name)
    (claimed,) = (await backend.claim("flows", "w1", 1, 60, time.time(), None)).jobs
    async with conn.transaction():  # the child's add, not yet committed, holds the parent's row
        child = await queue.add(noop.name, depends_on=[parent], connection=conn)
        claimed.status, claimed.result, claimed.finished_at = JobState.COMPLETED, 7, time.time()
        finishing = asyncio.create_task(backend.finish([claimed], Retention(3600, 1000)))
        await _until_waiting_on_a_lock(conn, schema)
    assert await finishing == [True]
    job = await queue.get_job(child)
    assert job is not None
    assert job.status is JobState.WAITING
    assert job.deps is not None
    assert job.deps["results"] == {parent: 7}
    assert (await queue.counts())["waiting"] == 1


async def test_a_blocked_job_holds_its_deduplication_key(
    backend: PostgresBackend, conn: asyncpg.Connection, schema: str
) -> None:
    queue = Queue("flows", backend=backend)
    parent = await queue.add(noop.name, delay=60)
    child = await queue.add(noop.name, depends_on=[parent])
    # A job that holds a key and is blocked: no add makes one (a child is never deduplicated),
    # but the key's rule is by status, as `deduplication_holder` reads it.
    await conn.execute(
        f"INSERT INTO {schema}.dedup (queue, id, job_id, expires_at) VALUES ('flows', 'k', $1, NULL)", child
    )
    assert await backend.deduplication_holder("flows", "k", time.time()) == child
    assert await queue.add(noop.name, deduplication={"id": "k"}) == child
    assert (await queue.counts())["waiting"] == 0
