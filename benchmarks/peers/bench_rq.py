"""RQ on Redis, measured like its peers (run in its own venv, see run.py).

Fast path: `Queue.enqueue_many` is RQ's bulk call (one pipeline for the batch). RQ's default worker
forks a child per job; its docs offer `SimpleWorker`, which runs jobs in the worker's own process,
as the faster choice when jobs need no isolation, which is what this worker runs. An RQ worker runs
one job at a time; its concurrency is more processes (`rq worker-pool`), which the one-worker-process
rule here leaves out, so RQ runs at concurrency 1. `result_ttl=0` drops results, as the no-result
setups of the other peers do; `--logging_level WARNING` drops its line per job.
"""

from __future__ import annotations

from importlib.metadata import version

from _common import NoopCounter, paced, run, settings, venv_bin
from redis import Redis
from rq import Queue

counter = NoopCounter()
PIPELINE_CHUNK = 1_000
# By name: RQ refuses functions of __main__, and the worker imports this file as `bench_rq`.
NOOP, LATENCY = "bench_rq.noop", "bench_rq.latency"


def noop() -> None:
    counter()


def latency(enqueued_at: float) -> None:
    counter.record_latency(enqueued_at)


def main() -> None:
    args = settings(__doc__)
    queue = Queue("bench", connection=Redis.from_url(args.redis))

    def one_by_one(jobs: int) -> None:
        for _ in range(jobs):
            queue.enqueue(NOOP, result_ttl=0)

    def bulk(jobs: int) -> None:
        for start in range(0, jobs, PIPELINE_CHUNK):
            count = min(PIPELINE_CHUNK, jobs - start)
            queue.enqueue_many([Queue.prepare_data(NOOP, result_ttl=0) for _ in range(count)])

    run(
        args,
        "RQ",
        version("rq"),
        enqueue_one_by_one=one_by_one,
        enqueue_bulk=bulk,
        bulk_method=f"Queue.enqueue_many, {PIPELINE_CHUNK:,} a call",
        worker_command=[
            venv_bin("rq"),
            "worker",
            "--worker-class",
            "rq.worker.SimpleWorker",
            "--url",
            args.redis,
            "--logging_level",
            "WARNING",
            "bench",
        ],
        latency_producer=lambda rate, jobs: paced(
            rate, jobs, lambda enqueued_at: queue.enqueue(LATENCY, enqueued_at, result_ttl=0)
        ),
        notes="SimpleWorker: one job at a time",
    )


if __name__ == "__main__":
    main()
