"""The hot statements use their indexes: on a table of 100,000 jobs, the plans PostgreSQL
actually runs for claiming, promotion, stalled recovery, outcomes with their retention and
purging (read from `auto_explain`, nested statements of the claim function included) scan
an index, never the whole table or the whole queue. Plans are the generic ones a long-running
worker's prepared statements settle on, where a parameter cannot prove a partial index's
predicate."""

from __future__ import annotations

import time

import asyncpg
import pytest

from asyncmq.backends.postgres import PostgresBackend
from asyncmq.job import JobState
from asyncmq.queues import Queue
from asyncmq.transitions import Retention, stall_recovery
from tests.conformance.support import noop

JOBS = 100_000


async def _explained(postgres_url: str, schema: str, plans: list[str]) -> PostgresBackend:
    """A backend whose connections send every statement's plan to `plans`."""

    async def setup(conn: asyncpg.Connection) -> None:  # on each acquire: a release resets both
        conn.add_log_listener(lambda _conn, message: plans.append(message.message))
        await conn.execute(
            "LOAD 'auto_explain'; SET auto_explain.log_min_duration = 0; "
            "SET auto_explain.log_nested_statements = on; SET client_min_messages = log; "
            "SET plan_cache_mode = force_generic_plan"
        )

    init = PostgresBackend.init_connection
    pool = await asyncpg.create_pool(postgres_url, min_size=1, max_size=2, init=init, setup=setup)
    backend = PostgresBackend(pool, schema=schema)
    await backend.connect()
    return backend


def _plans_of(plans: list[str], marker: str) -> list[str]:
    return [plan for plan in plans if marker in plan]


# The plans arrive through a log listener that stays on the pool's connections.
@pytest.mark.filterwarnings("ignore:.*active log listener:asyncpg.exceptions.InterfaceWarning")
async def test_hot_statements_use_their_indexes_on_100000_jobs_in_generic_plans(
    backend: PostgresBackend, postgres_url: str, schema: str, conn: asyncpg.Connection
) -> None:
    queue = Queue("big", backend=backend)
    for start in range(0, JOBS, 10_000):  # waiting, delayed and other queues' jobs alike
        await queue.add_bulk(
            [{"task_id": noop.name, "delay": 3600 if i % 3 else None} for i in range(10_000)]
        )
        await Queue(f"other-{start}", backend=backend).add_bulk([{"task_id": noop.name}] * 1000)
    await conn.execute(f"ANALYZE {schema}.jobs")

    plans: list[str] = []
    explained = await _explained(postgres_url, schema, plans)
    try:
        claimed = await explained.claim("big", "w", 50, 0.001, time.time(), None)
        assert len(claimed.jobs) == 50
        await explained.promote_due("big", time.time() + 7200, 1000)
        recovery = stall_recovery(1, Retention(ttl_s=60, keep=100))
        assert len(await explained.recover_stalled("big", time.time() + 1, recovery)) == 50
        finished = (await explained.claim("big", "w", 50, 60, time.time(), None)).jobs
        for job in finished:
            job.status, job.finished_at = JobState.COMPLETED, time.time()
        assert all(await explained.finish(finished, Retention(ttl_s=60, keep=10)))  # 40 trimmed
        await explained.purge_finished("big", time.time() + 3600, Retention(ttl_s=60, keep=10))
    finally:
        await explained.close()
        await explained.pool.close()

    for marker, index in (
        ("w.status = 'waiting'", "jobs_waiting"),  # the claim function's picking query
        ("status = 'delayed' AND delay_until <=", "jobs_delayed"),
        ("lease_until <", "jobs_active"),
    ):
        found = _plans_of(plans, marker)
        assert found, f"no plan logged for {marker!r}"
        for plan in found:
            assert f"Index Scan using {index}" in plan or f"Index Only Scan using {index}" in plan, plan
            assert "Seq Scan on jobs" not in plan, plan

    # An outcome finds its row by primary key, and retention the oldest finished jobs by
    # their index: neither reads through the queue's other jobs.
    for marker, indexes in (
        ("settled_token = o.token", ("jobs_pkey", "jobs_finished")),
        ("finished_at <", ("jobs_finished",)),
    ):
        found = _plans_of(plans, marker)
        assert found, f"no plan logged for {marker!r}"
        for plan in found:
            for index in indexes:
                assert f"using {index} on jobs" in plan, plan
            assert "Seq Scan on jobs" not in plan, plan
            assert "Bitmap" not in plan, plan
