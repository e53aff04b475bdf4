"""This repository's asyncmq on Redis, measured exactly like its peers (run in the repository's .venv).

Fast path, all documented defaults: `Queue.add_bulk` stores a whole batch in one backend call (10,000
jobs a call here); the worker is the `asyncmq worker start` command, one process, `--concurrency 10`,
which claims jobs in batches and stores outcomes in batches on its own.
"""

from __future__ import annotations

import asyncio
import sys
from importlib.metadata import version

from _common import NoopCounter, apaced, run, settings

from asyncmq.backends.redis import RedisBackend
from asyncmq.queues import Queue
from asyncmq.tasks import task

QUEUE = "bench"
BULK_CHUNK = 10_000
counter = NoopCounter()


@task(queue=QUEUE, name="bench.noop")
async def noop() -> None:
    counter()


@task(queue=QUEUE, name="bench.latency")
async def latency(enqueued_at: float) -> None:
    counter.record_latency(enqueued_at)


def main() -> None:
    args = settings(__doc__)
    loop = asyncio.new_event_loop()
    queue = Queue(QUEUE, backend=RedisBackend(args.redis))

    async def one_by_one(jobs: int) -> None:
        for _ in range(jobs):
            await queue.add("bench.noop")

    async def bulk(jobs: int) -> None:
        for start in range(0, jobs, BULK_CHUNK):
            await queue.add_bulk([{"task_id": "bench.noop"}] * min(BULK_CHUNK, jobs - start))

    async def enqueue_latency(enqueued_at: float) -> None:
        await queue.add("bench.latency", (enqueued_at,))

    run(
        args,
        "asyncmq (this repository)",
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
            args.redis,
            "--app",
            "bench_asyncmq",
            "--concurrency",
            str(args.concurrency),
            "--log-level",
            "warning",
        ],
        latency_producer=lambda rate, jobs: loop.run_until_complete(apaced(rate, jobs, enqueue_latency)),
        notes="worker on uvloop (the CLI's default)",
    )
    loop.run_until_complete(queue.backend.close())


if __name__ == "__main__":
    main()
