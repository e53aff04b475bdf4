"""Built for churn: a backend moving many jobs vacuums its jobs table itself, rather than wait
for autovacuum's once-a-minute visit (or for none, on a server that runs without it)."""

from __future__ import annotations

import asyncio
import time

import asyncpg

from asyncmq.queues import Queue
from tests.conformance.support import noop
from tests.postgres.conftest import MakeBackend


async def _vacuums(conn: asyncpg.Connection, schema: str) -> int:
    count: int = await conn.fetchval(
        "SELECT vacuum_count FROM pg_stat_user_tables WHERE schemaname = $1 AND relname = 'jobs'", schema
    )
    return count


async def test_every_vacuum_every_outcomes_the_backend_vacuums_its_jobs_table(
    make_backend: MakeBackend, conn: asyncpg.Connection, schema: str
) -> None:
    queue = Queue("churn", backend=await make_backend(vacuum_every=100))
    await queue.add_bulk([{"task_id": noop.name}] * 250)
    assert await _vacuums(conn, schema) == 0

    await asyncio.wait_for(queue.worker(burst=True, handle_signals=False).run(), 30)

    deadline = time.monotonic() + 10
    while await _vacuums(conn, schema) == 0:
        assert time.monotonic() < deadline, "no VACUUM of the jobs table after 250 outcomes"
        await asyncio.sleep(0.05)


async def test_without_vacuum_every_the_table_is_left_to_autovacuum(
    make_backend: MakeBackend, conn: asyncpg.Connection, schema: str
) -> None:
    queue = Queue("churn", backend=await make_backend(vacuum_every=None))
    await queue.add_bulk([{"task_id": noop.name}] * 250)

    await asyncio.wait_for(queue.worker(burst=True, handle_signals=False).run(), 30)

    await asyncio.sleep(0.3)
    assert await _vacuums(conn, schema) == 0
