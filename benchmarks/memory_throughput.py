"""No-op jobs on the in-memory backend: enqueue one by one, enqueue in bulk, process.

    .venv/bin/python benchmarks/memory_throughput.py --jobs 50000 --repeat 5

Each figure is the median over repetitions, with its spread (min-max); enqueue and
processing are timed apart (see docs/tuning.md). The measuring is `asyncmq.bench`'s,
as in `asyncmq bench`; this script keeps the original command line and output.
"""

from __future__ import annotations

import argparse
import asyncio

from asyncmq.backends.memory import InMemoryBackend
from asyncmq.bench.measure import Spread, enqueue_bulk, enqueue_one_by_one, process_in_process, timed_rate
from asyncmq.bench.workloads import WORKLOADS
from asyncmq.queues import Queue

NOOP = WORKLOADS["noop"]


async def one_round(jobs: int, concurrency: int) -> dict[str, float]:
    queue = Queue("bench", backend=InMemoryBackend(), concurrency=concurrency)
    figures = {
        "enqueue one by one": await timed_rate(jobs, lambda: enqueue_one_by_one(queue, NOOP, jobs)),
        "enqueue bulk": await timed_rate(jobs, lambda: enqueue_bulk(queue, NOOP, jobs)),
        "process": (await process_in_process(queue, 2 * jobs, concurrency))["process_jobs_per_s"],
    }
    assert (await queue.counts())["waiting"] == 0
    return figures


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=50_000)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    rounds = [await one_round(args.jobs, args.concurrency) for _ in range(args.repeat)]
    print(f"{args.jobs} no-op jobs, concurrency {args.concurrency}, {args.repeat} rounds (jobs/s)")
    for name in rounds[0]:
        spread = Spread.of([r[name] for r in rounds])
        print(
            f"  {name:<20} median {spread.median:>9,.0f}   min {spread.min:>9,.0f}   max {spread.max:>9,.0f}"
        )


if __name__ == "__main__":
    asyncio.run(main())
