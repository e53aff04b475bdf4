"""AsyncMQ 0.10.1, the PyPI project named `asyncmq` (unrelated to this repository), on Redis, measured
like its peers (run in its own venv, see run.py).

Fast path: its documented API with its defaults. `Queue.add_bulk` is its bulk call (it loops over
`Queue.add`, so it is reported as bulk but runs one job at a time); the worker is `Queue.start()`, its
documented blocking entry point, in one process with `concurrency` = 10 (the `asyncmq worker start`
command runs the same `run_worker`, but takes its backend only from a settings module).
"""

from __future__ import annotations

import asyncio
import os
import sys
from importlib.metadata import version

from _common import NoopCounter, apaced, run, settings

from asyncmq.backends.redis import RedisBackend
from asyncmq.queues import Queue
from asyncmq.tasks import task

QUEUE = "bench"
# Its task ids are `module.function`; the worker imports this file as `bench_asyncmq_pypi`.
NOOP, LATENCY = "bench_asyncmq_pypi.noop", "bench_asyncmq_pypi.latency"
counter = NoopCounter()


@task(queue=QUEUE)
async def noop() -> None:
    counter()


@task(queue=QUEUE)
async def latency(enqueued_at: float) -> None:
    counter.record_latency(enqueued_at)


def work() -> None:
    """The worker process: `python -c "import bench_asyncmq_pypi; bench_asyncmq_pypi.work()"`."""
    backend = RedisBackend(os.environ["BENCH_REDIS"])
    Queue(QUEUE, backend=backend, concurrency=int(os.environ["BENCH_CONCURRENCY"])).start()


def main() -> None:
    args = settings(__doc__)
    loop = asyncio.new_event_loop()
    queue = Queue(QUEUE, backend=RedisBackend(args.redis))

    async def one_by_one(jobs: int) -> None:
        for _ in range(jobs):
            await queue.add(NOOP)

    async def bulk(jobs: int) -> None:
        await queue.add_bulk([{"task_id": NOOP} for _ in range(jobs)])

    async def enqueue_latency(enqueued_at: float) -> None:
        await queue.add(LATENCY, args=[enqueued_at])

    run(
        args,
        "AsyncMQ 0.10.1 (PyPI)",
        version("asyncmq"),
        enqueue_one_by_one=lambda jobs: loop.run_until_complete(one_by_one(jobs)),
        enqueue_bulk=lambda jobs: loop.run_until_complete(bulk(jobs)),
        bulk_method="Queue.add_bulk (loops over Queue.add)",
        worker_command=[sys.executable, "-c", "import bench_asyncmq_pypi; bench_asyncmq_pypi.work()"],
        latency_producer=lambda rate, jobs: loop.run_until_complete(apaced(rate, jobs, enqueue_latency)),
    )


if __name__ == "__main__":
    main()
