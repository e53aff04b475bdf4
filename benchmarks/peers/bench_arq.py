"""arq on Redis, measured like its peers (run in its own venv, see run.py).

Fast path: arq has no bulk enqueue, so every job goes through `ArqRedis.enqueue_job`, one awaited call
at a time. The worker is the `arq` command, one process, `max_jobs` = concurrency. Two documented
settings differ from arq's defaults, both to let it go as fast as it can:
- `poll_delay = 0.01`: arq polls its queue instead of blocking on it, every 0.5 s by default, which
  caps a worker near `queue_read_limit` jobs per poll; 10 ms is arq's documented knob for that.
- `keep_result = 0`: "if 0 the result is not kept", the same as running without a result backend.
arq logs every job at INFO; the log is configured at WARNING, as it is for every peer.
"""

from __future__ import annotations

import asyncio
import os
from importlib.metadata import version
from typing import Any

from _common import NoopCounter, apaced, run, settings, venv_bin
from arq import create_pool
from arq.connections import RedisSettings

counter = NoopCounter()


async def noop(ctx: dict[str, Any]) -> None:
    counter()


async def latency(ctx: dict[str, Any], enqueued_at: float) -> None:
    counter.record_latency(enqueued_at)


class WorkerSettings:
    functions = [noop, latency]
    redis_settings = RedisSettings.from_dsn(os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/9"))
    max_jobs = int(os.environ.get("BENCH_CONCURRENCY", "10"))
    poll_delay = 0.01
    keep_result = 0


# Passed to `arq --custom-log-dict`: arq's own loggers at WARNING (no line per job).
LOGGING = {
    "version": 1,
    "handlers": {"console": {"class": "logging.StreamHandler", "level": "WARNING"}},
    "loggers": {"arq": {"handlers": ["console"], "level": "WARNING"}},
}


def main() -> None:
    args = settings(__doc__)
    loop = asyncio.new_event_loop()
    redis = loop.run_until_complete(create_pool(RedisSettings.from_dsn(args.redis)))

    async def one_by_one(jobs: int) -> None:
        for _ in range(jobs):
            await redis.enqueue_job("noop")

    async def enqueue_latency(enqueued_at: float) -> None:
        await redis.enqueue_job("latency", enqueued_at)

    run(
        args,
        "arq",
        version("arq"),
        enqueue_one_by_one=lambda jobs: loop.run_until_complete(one_by_one(jobs)),
        enqueue_bulk=None,
        bulk_method="none (enqueue_job one at a time)",
        worker_command=[
            venv_bin("arq"),
            "bench_arq.WorkerSettings",
            "--custom-log-dict",
            "bench_arq.LOGGING",
        ],
        latency_producer=lambda rate, jobs: loop.run_until_complete(apaced(rate, jobs, enqueue_latency)),
        notes="poll_delay 10 ms, keep_result 0",
    )
    loop.run_until_complete(redis.aclose())


if __name__ == "__main__":
    main()
