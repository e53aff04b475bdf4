"""taskiq with taskiq-redis, measured like its peers (run in its own venv, see run.py).

Fast path: `RedisStreamBroker`, the taskiq-redis broker that acknowledges messages (like every other
system here) and reads them in batches (`xread_count` 100 by default); no result backend (taskiq's
default). The worker is the `taskiq worker` command with one process (`--workers 1`, its default is
2) and `--max-async-tasks 10` as the concurrency. taskiq has no bulk enqueue, so every job goes through
`Task.kiq()`, one awaited call at a time.
"""

from __future__ import annotations

import asyncio
import os
from importlib.metadata import version

from _common import NoopCounter, apaced, run, settings, venv_bin
from taskiq_redis import RedisStreamBroker

counter = NoopCounter()
broker = RedisStreamBroker(url=os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/9"), queue_name="bench")


@broker.task(task_name="noop")
async def noop() -> None:
    counter()


@broker.task(task_name="latency")
async def latency(enqueued_at: float) -> None:
    counter.record_latency(enqueued_at)


def main() -> None:
    args = settings(__doc__)
    loop = asyncio.new_event_loop()
    # The broker above is the worker's (from BENCH_REDIS); the producer kicks through its own, to
    # --redis. Its start-up creates the consumer group (at the stream's end), so it runs after the
    # flush and before the first job, for the worker to read the jobs sent before it started.
    producer = RedisStreamBroker(url=args.redis, queue_name="bench")

    async def one_by_one(jobs: int) -> None:
        for _ in range(jobs):
            await noop.kicker().with_broker(producer).kiq()

    async def enqueue_latency(enqueued_at: float) -> None:
        await latency.kicker().with_broker(producer).kiq(enqueued_at)

    run(
        args,
        "taskiq + taskiq-redis",
        f"{version('taskiq')} / taskiq-redis {version('taskiq-redis')}",
        enqueue_one_by_one=lambda jobs: loop.run_until_complete(one_by_one(jobs)),
        enqueue_bulk=None,
        bulk_method="none (kiq one at a time)",
        worker_command=[
            venv_bin("taskiq"),
            "worker",
            "bench_taskiq:broker",
            "--workers",
            "1",
            "--max-async-tasks",
            str(args.concurrency),
            "--log-level",
            "WARNING",
        ],
        latency_producer=lambda rate, jobs: loop.run_until_complete(apaced(rate, jobs, enqueue_latency)),
        prepare=lambda: loop.run_until_complete(producer.startup()),
        notes="RedisStreamBroker",
    )
    loop.run_until_complete(producer.shutdown())


if __name__ == "__main__":
    main()
