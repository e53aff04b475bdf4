"""PgQueuer on PostgreSQL, measured like its peers (run in its own venv, see run.py).

Fast path, as PgQueuer's docs give it: the asyncpg driver (its docs find it about twice as fast as
psycopg), one plain asyncpg connection for the worker (its performance guide: "Always use a direct
`asyncpg` connection (not a pool) for the `QueueManager`"), and `Queries.enqueue` with lists as the
bulk call (10,000 jobs a call here, one statement over UNNEST each). Its schema is installed with
`Queries.install()` (what `pgq install` runs) after `Queries.uninstall()`, in a database of its own,
and `Queries.optimize_autovacuum()` (`pgq autovac`) follows, as its performance checklist asks. The
worker is PgQueuer's `pgq run` command (on uvloop, which PgQueuer installs) with its default
`--batch-size 10`, as in PgQueuer's own benchmark (`tools/benchmark.py`: batch 10, no limits). Its
slots are capped per process by `--max-concurrent-tasks 20`, the lowest it accepts with batches of
10 (at least twice the batch): the nearest to the 10 slots of its peers. The per-entrypoint
`concurrency_limit` is left unset: it is enforced in SQL across all workers (every dequeue counts
the entrypoint's picked jobs), meant for scarce shared resources, and halves PgQueuer's rate here.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import version

import asyncpg
from _common import NoopCounter, apaced, created_with_asyncpg, postgres_database, run, settings, venv_bin
from pgqueuer import PgQueuer, Queries
from pgqueuer.models import Job

BULK_CHUNK = 10_000
BATCH_SIZE = 10
counter = NoopCounter()


def database_url(url: str) -> str:
    return postgres_database(url, "pgqueuer").url


# `pgq run bench_pgqueuer:create_pgqueuer`
@asynccontextmanager
async def create_pgqueuer() -> AsyncIterator[PgQueuer]:
    connection = await asyncpg.connect(database_url(os.environ["BENCH_POSTGRES"]))
    pgq = PgQueuer.from_asyncpg_connection(connection)

    @pgq.entrypoint("noop")
    async def noop(job: Job) -> None:
        counter()

    @pgq.entrypoint("latency")
    async def latency(job: Job) -> None:
        assert job.payload is not None
        counter.record_latency(float(job.payload))

    try:
        yield pgq
    finally:
        await connection.close()


async def reset(url: str) -> None:
    """Its database created if missing; PgQueuer's schema uninstalled, installed, autovacuum tuned."""
    database = await created_with_asyncpg(postgres_database(url, "pgqueuer"))
    connection = await asyncpg.connect(database.url)
    try:
        queries = Queries.from_asyncpg_connection(connection)
        await queries.uninstall()
        await queries.install()
        await queries.optimize_autovacuum()
    finally:
        await connection.close()


def main() -> None:
    args = settings(__doc__)
    loop = asyncio.new_event_loop()
    producer: Queries | None = None  # once its schema is in

    async def prepare() -> None:
        nonlocal producer
        await reset(args.postgres)
        producer = Queries.from_asyncpg_connection(await asyncpg.connect(database_url(args.postgres)))

    async def one_by_one(jobs: int) -> None:
        assert producer is not None
        for _ in range(jobs):
            await producer.enqueue("noop", None)

    async def bulk(jobs: int) -> None:
        assert producer is not None
        for start in range(0, jobs, BULK_CHUNK):
            size = min(BULK_CHUNK, jobs - start)
            await producer.enqueue(["noop"] * size, [None] * size, [0] * size)

    async def enqueue_latency(enqueued_at: float) -> None:
        assert producer is not None
        await producer.enqueue("latency", repr(enqueued_at).encode())

    run(
        args,
        "PgQueuer",
        version("pgqueuer"),
        enqueue_one_by_one=lambda jobs: loop.run_until_complete(one_by_one(jobs)),
        enqueue_bulk=lambda jobs: loop.run_until_complete(bulk(jobs)),
        bulk_method=f"Queries.enqueue with lists, {BULK_CHUNK:,} a call",
        worker_command=[
            venv_bin("pgq"),
            "run",
            "bench_pgqueuer:create_pgqueuer",
            "--batch-size",
            str(BATCH_SIZE),
            "--max-concurrent-tasks",
            str(2 * BATCH_SIZE),
            "--log-level",
            "WARNING",
        ],
        latency_producer=lambda rate, jobs: loop.run_until_complete(apaced(rate, jobs, enqueue_latency)),
        prepare=lambda: loop.run_until_complete(prepare()),
        notes="asyncpg driver; worker on uvloop; 20 tasks at most per process",
    )


if __name__ == "__main__":
    main()
