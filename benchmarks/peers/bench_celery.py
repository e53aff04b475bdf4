"""Celery on Redis, measured like its peers (run in its own venv, see run.py).

Fast path, from Celery's optimizing and worker guides: the Redis broker and no result backend
(`task_ignore_result`); one worker process with the `threads` pool and `--concurrency 10` (the pool
its docs suggest for I/O-bound tasks; `-O fair` applies to the prefork pool only);
`--without-gossip --without-mingle --without-heartbeat`, which its docs recommend to cut broker
traffic a single worker does not need; log level WARNING (no line per job, as for every peer).
Celery has no bulk enqueue (a `group` publishes its messages one by one), so every job is published
on its own, through one producer taken from the pool for the whole run (the documented way to avoid
a connection per call).
"""

from __future__ import annotations

import os
from importlib.metadata import version

from _common import NoopCounter, paced, run, settings, venv_bin
from celery import Celery

counter = NoopCounter()
app = Celery("bench_celery", broker=os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/9"))
app.conf.update(task_ignore_result=True, task_default_queue="bench", broker_connection_retry_on_startup=True)


@app.task(name="noop")
def noop() -> None:
    counter()


@app.task(name="latency")
def latency(enqueued_at: float) -> None:
    counter.record_latency(enqueued_at)


def main() -> None:
    args = settings(__doc__)
    app.conf.broker_url = args.redis

    with app.producer_pool.acquire(block=True) as producer:

        def one_by_one(jobs: int) -> None:
            for _ in range(jobs):
                noop.apply_async(producer=producer)

        run(
            args,
            "Celery",
            version("celery"),
            enqueue_one_by_one=one_by_one,
            enqueue_bulk=None,
            bulk_method="none (apply_async one at a time, one producer)",
            worker_command=[
                venv_bin("celery"),
                "-A",
                "bench_celery",
                "worker",
                "--pool",
                "threads",
                "--concurrency",
                str(args.concurrency),
                "--queues",
                "bench",
                "--loglevel",
                "WARNING",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ],
            latency_producer=lambda rate, jobs: paced(
                rate, jobs, lambda t: latency.apply_async((t,), producer=producer)
            ),
            notes="threads pool",
        )


if __name__ == "__main__":
    main()
