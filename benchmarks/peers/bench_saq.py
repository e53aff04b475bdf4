"""SAQ on Redis, measured like its peers (run in its own venv, see run.py).

Fast path: SAQ's defaults, which its docs present as the way to run it. Its worker blocks on the
queue (BLMOVE), so it needs no polling setting. SAQ has no bulk enqueue (`Queue.map` gathers single
`enqueue` calls and then waits for the results), so every job goes through `Queue.enqueue`, one
awaited call at a time. The worker is the `saq` command, one process, `concurrency` = 10, `--quiet`
(no logging configured: no line per job, as for every peer).
"""

from __future__ import annotations

import asyncio
import os
from importlib.metadata import version
from typing import Any

from _common import NoopCounter, apaced, run, settings, venv_bin
from saq import Queue

counter = NoopCounter()


async def noop(ctx: dict[str, Any]) -> None:
    counter()


async def latency(ctx: dict[str, Any], *, enqueued_at: float) -> None:
    counter.record_latency(enqueued_at)


queue = Queue.from_url(os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/9"), name="bench")

# `saq bench_saq.worker_settings`
worker_settings = {
    "queue": queue,
    "functions": [noop, latency],
    "concurrency": int(os.environ.get("BENCH_CONCURRENCY", "10")),
}


def main() -> None:
    args = settings(__doc__)
    loop = asyncio.new_event_loop()
    producer = Queue.from_url(args.redis, name="bench")
    loop.run_until_complete(producer.connect())

    async def one_by_one(jobs: int) -> None:
        for _ in range(jobs):
            await producer.enqueue("noop")

    async def enqueue_latency(enqueued_at: float) -> None:
        await producer.enqueue("latency", enqueued_at=enqueued_at)

    run(
        args,
        "SAQ",
        version("saq"),
        enqueue_one_by_one=lambda jobs: loop.run_until_complete(one_by_one(jobs)),
        enqueue_bulk=None,
        bulk_method="none (Queue.enqueue one at a time)",
        worker_command=[venv_bin("saq"), "bench_saq.worker_settings", "--quiet"],
        latency_producer=lambda rate, jobs: loop.run_until_complete(apaced(rate, jobs, enqueue_latency)),
    )
    loop.run_until_complete(producer.disconnect())


if __name__ == "__main__":
    main()
