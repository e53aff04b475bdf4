"""This repository's asyncmq on PostgreSQL, measured exactly like its peers (run in the repository's .venv).

Fast path, all documented defaults: `PostgresBackend` in a schema of its own (`?schema=asyncmq_bench`
in the URL), dropped before each run and migrated again by the backend on first use, as it does on
connect. `Queue.add_bulk` stores a whole batch in one statement (10,000 jobs a call here); the worker
is the `asyncmq worker start` command, one process, `--concurrency 10`, which claims jobs in batches,
stores outcomes in batches and wakes on NOTIFY on its own. The tasks are bench_asyncmq.py's.
"""

from __future__ import annotations

import asyncio
import sys
from importlib.metadata import version

import asyncpg
from _common import apaced, created_with_asyncpg, postgres_database, run, settings
from bench_asyncmq import BULK_CHUNK, QUEUE, latency, noop

from asyncmq.backends.postgres import postgres_backend_from_url
from asyncmq.queues import Queue

SCHEMA = "asyncmq_bench"


def backend_url(url: str) -> str:
    """The backend's URL: the benchmark database, this peer's schema."""
    return f"{url}{'&' if '?' in url else '?'}schema={SCHEMA}"


async def reset(url: str) -> None:
    """The database created if missing; this peer's schema dropped (the backend recreates it)."""
    database = await created_with_asyncpg(postgres_database(url))
    conn = await asyncpg.connect(database.url)
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
    finally:
        await conn.close()


def main() -> None:
    args = settings(__doc__)
    loop = asyncio.new_event_loop()
    url = backend_url(args.postgres)
    queue = Queue(QUEUE, backend=postgres_backend_from_url(url))

    async def prepare() -> None:
        await reset(args.postgres)
        await queue.backend.connect()  # migrates the schema: before the timed enqueues, not in them

    async def one_by_one(jobs: int) -> None:
        for _ in range(jobs):
            await queue.add(noop.name)

    async def bulk(jobs: int) -> None:
        for start in range(0, jobs, BULK_CHUNK):
            await queue.add_bulk([{"task_id": noop.name}] * min(BULK_CHUNK, jobs - start))

    async def enqueue_latency(enqueued_at: float) -> None:
        await queue.add(latency.name, (enqueued_at,))

    run(
        args,
        "asyncmq (this repository), PostgreSQL",
        version("asyncmq"),
        enqueue_one_by_one=lambda jobs: loop.run_until_complete(one_by_one(jobs)),
        enqueue_bulk=lambda jobs: loop.run_until_complete(bulk(jobs)),
        bulk_method=f"Queue.add_bulk, {BULK_CHUNK:,} a call",
        worker_command=[
            sys.executable,
            "-m",
            "asyncmq",
            "worker",
            "start",
            QUEUE,
            "--backend",
            url,
            "--app",
            "bench_asyncmq_postgres",
            "--concurrency",
            str(args.concurrency),
            "--log-level",
            "warning",
        ],
        latency_producer=lambda rate, jobs: loop.run_until_complete(apaced(rate, jobs, enqueue_latency)),
        prepare=lambda: loop.run_until_complete(prepare()),
        notes="worker on uvloop (the CLI's default)",
    )
    loop.run_until_complete(queue.backend.close())


if __name__ == "__main__":
    main()
