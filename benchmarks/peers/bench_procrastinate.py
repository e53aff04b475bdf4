"""Procrastinate on PostgreSQL, measured like its peers (run in its own venv, see run.py).

Fast path: Procrastinate's documented defaults. `PsycopgConnector` (psycopg 3 and its default pool),
its schema applied with `SchemaManager.apply_schema_async()` (what `procrastinate schema --apply`
runs) to an empty database of its own (its `public` schema dropped and recreated first), the
`procrastinate worker` command with `--concurrency 10` (async sub-workers, each fetching one job at a
time; LISTEN/NOTIFY on, its default) and `--log-level warning` (its default, info, logs lines per
job). Jobs are kept when done (`delete_jobs` never, its default). `Task.defer_async` enqueues one
job; `Task.batch_defer_async` many in one INSERT (10,000 a call here).
"""

from __future__ import annotations

import asyncio
import os
from importlib.metadata import version

import procrastinate
import psycopg
from _common import POSTGRES_URL, NoopCounter, apaced, postgres_database, run, settings, venv_bin

BULK_CHUNK = 10_000
counter = NoopCounter()


def database_url(url: str) -> str:
    return postgres_database(url, "procrastinate").url


app = procrastinate.App(
    connector=procrastinate.PsycopgConnector(
        conninfo=database_url(os.environ.get("BENCH_POSTGRES", POSTGRES_URL))
    )
)


@app.task(name="noop", queue="bench")
async def noop() -> None:
    counter()


@app.task(name="latency", queue="bench")
async def latency(enqueued_at: float) -> None:
    counter.record_latency(enqueued_at)


async def reset(url: str) -> None:
    """Its database created if missing, and emptied: its `public` schema dropped and recreated."""
    database = postgres_database(url, "procrastinate")
    async with await psycopg.AsyncConnection.connect(database.maintenance_url, autocommit=True) as admin:
        cursor = await admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database.name,))
        if await cursor.fetchone() is None:
            await admin.execute(f'CREATE DATABASE "{database.name}"')
    async with await psycopg.AsyncConnection.connect(database.url, autocommit=True) as conn:
        await conn.execute("DROP SCHEMA public CASCADE")
        await conn.execute("CREATE SCHEMA public")


def main() -> None:
    args = settings(__doc__)
    loop = asyncio.new_event_loop()

    async def prepare() -> None:
        await reset(args.postgres)
        await app.open_async()
        await app.schema_manager.apply_schema_async()

    async def one_by_one(jobs: int) -> None:
        for _ in range(jobs):
            await noop.defer_async()

    async def bulk(jobs: int) -> None:
        for start in range(0, jobs, BULK_CHUNK):
            await noop.batch_defer_async(*([{}] * min(BULK_CHUNK, jobs - start)))

    async def enqueue_latency(enqueued_at: float) -> None:
        await latency.defer_async(enqueued_at=enqueued_at)

    # The connector above is the worker's (from BENCH_POSTGRES); the producer's goes to --postgres.
    with app.replace_connector(procrastinate.PsycopgConnector(conninfo=database_url(args.postgres))):
        run(
            args,
            "Procrastinate",
            f"{version('procrastinate')} / psycopg {version('psycopg')}",
            enqueue_one_by_one=lambda jobs: loop.run_until_complete(one_by_one(jobs)),
            enqueue_bulk=lambda jobs: loop.run_until_complete(bulk(jobs)),
            bulk_method=f"Task.batch_defer_async, {BULK_CHUNK:,} a call",
            worker_command=[
                venv_bin("procrastinate"),
                "--app",
                "bench_procrastinate.app",
                "--log-level",
                "warning",
                "worker",
                "--queues",
                "bench",
                "--concurrency",
                str(args.concurrency),
            ],
            latency_producer=lambda rate, jobs: loop.run_until_complete(apaced(rate, jobs, enqueue_latency)),
            prepare=lambda: loop.run_until_complete(prepare()),
            notes="psycopg 3 connector",
        )
        loop.run_until_complete(app.close_async())


if __name__ == "__main__":
    main()
