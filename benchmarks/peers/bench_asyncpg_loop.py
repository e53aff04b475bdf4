"""A bare asyncpg job loop on PostgreSQL: a reference, not a product (run in the repository's .venv).

The ceiling of one Python process on this PostgreSQL, measured like the job queues: what a queue
costs when it does nothing a queue is for. One table (id, state, payload), in a database of its own,
dropped and recreated before each run. Enqueueing one job is one statement: the INSERT and its
`pg_notify` together; many is one `INSERT ... SELECT unnest($1)` (10,000 a call here). The worker is
one process (on uvloop when installed, as asyncmq's worker command) running `--concurrency` (10)
loops, each on a connection of its own: claim up to 50 queued rows (`FOR UPDATE SKIP LOCKED`), run
them one after the other, mark them all done in one `UPDATE ... WHERE id = ANY($1)`, and, when
nothing is left, sleep until a NOTIFY (one LISTEN connection wakes one idle loop per NOTIFY; a loop
that claims a full batch wakes another). No leases, no retries, no events, no timeouts, no recovery
of a worker that dies mid-batch: none of what a job queue guarantees.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from _common import NoopCounter, apaced, created_with_asyncpg, postgres_database, run, settings

CHANNEL = "bench_jobs"
CLAIM_BATCH = 50
BULK_CHUNK = 10_000
POLL_S = 5.0  # a loop that got no NOTIFY claims again after this long anyway
counter = NoopCounter()

SCHEMA = [
    "DROP TABLE IF EXISTS jobs",
    "CREATE TABLE jobs (id bigserial PRIMARY KEY, state text NOT NULL DEFAULT 'queued', "
    "payload jsonb NOT NULL)",
    "CREATE INDEX jobs_queued ON jobs (id) WHERE state = 'queued'",
]
ENQUEUE = (
    "WITH job AS (INSERT INTO jobs (payload) VALUES ($1::jsonb) RETURNING 1) "
    f"SELECT pg_notify('{CHANNEL}', '') FROM job"
)
ENQUEUE_MANY = (
    "WITH job AS (INSERT INTO jobs (payload) SELECT unnest($1::jsonb[]) RETURNING 1) "
    f"SELECT pg_notify('{CHANNEL}', '') FROM (SELECT count(*) FROM job) AS stored"
)
CLAIM = f"""
    UPDATE jobs SET state = 'active'
    WHERE id IN (
        SELECT id FROM jobs WHERE state = 'queued' ORDER BY id LIMIT {CLAIM_BATCH} FOR UPDATE SKIP LOCKED
    )
    RETURNING id, payload
"""
COMPLETE = "UPDATE jobs SET state = 'done' WHERE id = ANY($1::bigint[])"
NOOP = json.dumps({"task": "noop"})


async def noop() -> None:
    counter()


async def latency(enqueued_at: float) -> None:
    counter.record_latency(enqueued_at)


TASKS: dict[str, Callable[..., Awaitable[None]]] = {"noop": noop, "latency": latency}


def database_url(url: str) -> str:
    return postgres_database(url, "asyncpg_loop").url


class Wakeup:
    """Wakes one idle loop per call; a call that finds none idle is kept for the next that would sleep."""

    def __init__(self) -> None:
        self._idle: deque[asyncio.Future[None]] = deque()
        self._pending = False

    def __call__(self, *_: Any) -> None:  # also asyncpg's listener callback
        while self._idle:
            waiter = self._idle.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._pending = True

    async def wait(self, timeout_s: float) -> None:
        if self._pending:
            self._pending = False
            return
        waiter = asyncio.get_running_loop().create_future()
        self._idle.append(waiter)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(waiter, timeout_s)


async def work_loop(url: str, wakeup: Wakeup) -> None:
    conn = await asyncpg.connect(url)
    try:
        while True:
            rows = await conn.fetch(CLAIM)
            if not rows:
                await wakeup.wait(POLL_S)
                continue
            if len(rows) == CLAIM_BATCH:
                wakeup()  # there may be more: another idle loop joins in
            for row in rows:
                payload = json.loads(row["payload"])
                await TASKS[payload["task"]](*payload.get("args", ()))
            await conn.execute(COMPLETE, [row["id"] for row in rows])
    finally:
        await conn.close()


async def serve(url: str, concurrency: int) -> None:
    wakeup = Wakeup()
    listener = await asyncpg.connect(url)
    await listener.add_listener(CHANNEL, wakeup)
    loops = [asyncio.ensure_future(work_loop(url, wakeup)) for _ in range(concurrency)]
    stop = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.cancel)
    try:
        await asyncio.wait([stop, *loops], return_when=asyncio.FIRST_COMPLETED)
        for loop in loops:
            if loop.done():
                loop.result()  # a loop that failed: its error
    finally:
        for loop in loops:
            loop.cancel()
        await asyncio.gather(*loops, return_exceptions=True)
        await listener.close()


def work() -> None:
    """The worker process: `python -c "import bench_asyncpg_loop; bench_asyncpg_loop.work()"`."""
    url = database_url(os.environ["BENCH_POSTGRES"])
    main = serve(url, int(os.environ["BENCH_CONCURRENCY"]))
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)  # as asyncmq's worker command, when it is installed


async def reset(url: str) -> None:
    """Its database created if missing; its table dropped and created again."""
    database = await created_with_asyncpg(postgres_database(url, "asyncpg_loop"))
    conn = await asyncpg.connect(database.url)
    try:
        for statement in SCHEMA:
            await conn.execute(statement)
    finally:
        await conn.close()


def main() -> None:
    args = settings(__doc__)
    loop = asyncio.new_event_loop()
    producer: asyncpg.Connection | None = None  # once its table is in

    async def prepare() -> None:
        nonlocal producer
        await reset(args.postgres)
        producer = await asyncpg.connect(database_url(args.postgres))

    async def one_by_one(jobs: int) -> None:
        assert producer is not None
        for _ in range(jobs):
            await producer.execute(ENQUEUE, NOOP)

    async def bulk(jobs: int) -> None:
        assert producer is not None
        for start in range(0, jobs, BULK_CHUNK):
            await producer.execute(ENQUEUE_MANY, [NOOP] * min(BULK_CHUNK, jobs - start))

    async def enqueue_latency(enqueued_at: float) -> None:
        assert producer is not None
        await producer.execute(ENQUEUE, json.dumps({"task": "latency", "args": [enqueued_at]}))

    run(
        args,
        "bare asyncpg loop (reference, not a product)",
        f"asyncpg {asyncpg.__version__}",
        enqueue_one_by_one=lambda jobs: loop.run_until_complete(one_by_one(jobs)),
        enqueue_bulk=lambda jobs: loop.run_until_complete(bulk(jobs)),
        bulk_method=f"INSERT ... unnest, {BULK_CHUNK:,} a call",
        worker_command=[sys.executable, "-c", "import bench_asyncpg_loop; bench_asyncpg_loop.work()"],
        latency_producer=lambda rate, jobs: loop.run_until_complete(apaced(rate, jobs, enqueue_latency)),
        prepare=lambda: loop.run_until_complete(prepare()),
        notes=f"claims {CLAIM_BATCH} a statement; no leases, retries or events",
    )
    if producer is not None:
        loop.run_until_complete(producer.close())


if __name__ == "__main__":
    main()
