"""Dramatiq on Redis, measured like its peers (run in its own venv, see run.py).

Fast path: `RedisBroker` with Dramatiq's default middleware (no results backend), the `dramatiq`
command with one process (`--processes 1`) and 10 threads (`--threads 10`): its docs scale I/O-bound
work with threads. Dramatiq has no bulk enqueue (a `group` sends its messages one by one), so every
job is sent on its own (`broker.enqueue(actor.message())`, what `Actor.send` does), one call at a
time. It logs no line per job.
"""

from __future__ import annotations

import os
from importlib.metadata import version

import dramatiq
from _common import NoopCounter, paced, run, settings, venv_bin
from dramatiq.brokers.redis import RedisBroker

counter = NoopCounter()
broker = RedisBroker(url=os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/9"))
dramatiq.set_broker(broker)


@dramatiq.actor(queue_name="bench", max_retries=0)
def noop() -> None:
    counter()


@dramatiq.actor(queue_name="bench", max_retries=0)
def latency(enqueued_at: float) -> None:
    counter.record_latency(enqueued_at)


def main() -> None:
    args = settings(__doc__)
    # The broker above is the worker's (from BENCH_REDIS); the producer sends through its own, to
    # --redis: `broker.enqueue(actor.message())` is what `actor.send()` does.
    producer = RedisBroker(url=args.redis)

    def one_by_one(jobs: int) -> None:
        for _ in range(jobs):
            producer.enqueue(noop.message())

    run(
        args,
        "Dramatiq",
        version("dramatiq"),
        enqueue_one_by_one=one_by_one,
        enqueue_bulk=None,
        bulk_method="none (Actor.send one at a time)",
        worker_command=[
            venv_bin("dramatiq"),
            "bench_dramatiq",
            "--processes",
            "1",
            "--threads",
            str(args.concurrency),
            "--queues",
            "bench",
        ],
        latency_producer=lambda rate, jobs: paced(rate, jobs, lambda t: producer.enqueue(latency.message(t))),
        notes="10 threads",
    )


if __name__ == "__main__":
    main()
