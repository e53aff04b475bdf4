"""A stored row that makes no valid job fails at once with the reason; the worker goes on."""

from __future__ import annotations

import asyncio

import asyncpg

from asyncmq.backends.postgres import PostgresBackend
from asyncmq.job import JobState
from asyncmq.queues import Queue
from tests.conformance.support import noop


async def test_a_malformed_row_fails_with_its_reason_and_the_worker_runs_the_next_job(
    backend: PostgresBackend, conn: asyncpg.Connection, schema: str
) -> None:
    queue = Queue("rows", backend=backend)
    broken = await queue.add(noop.name)
    fine = await queue.add(noop.name)
    await conn.execute(f"""UPDATE {schema}.jobs SET args = '{{"not": "a list"}}' WHERE id = $1""", broken)

    await asyncio.wait_for(queue.run(burst=True), 10)

    status, error = await conn.fetchrow(f"SELECT status, error FROM {schema}.jobs WHERE id = $1", broken)
    assert status == "failed"
    assert '"type": "MalformedJobError"' in error
    assert "malformed args" in error
    assert (await queue.get_job(fine)).status is JobState.COMPLETED
