"""No-op jobs on the in-memory backend: enqueue one by one, enqueue in bulk, process.

    .venv/bin/python benchmarks/memory_throughput.py --jobs 50000 --repeat 5

Each figure is the median over repetitions, with its spread (min-max); enqueue and
processing are timed apart, as the tuning guide asks.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable

from asyncmq.backends.memory import InMemoryBackend
from asyncmq.queues import Queue
from asyncmq.tasks import task


@task(queue="bench", name="bench.noop")
async def noop() -> None:
    return None


async def rate(jobs: int, action: Callable[[], Awaitable[object]]) -> float:
    start = time.perf_counter()
    await action()
    return jobs / (time.perf_counter() - start)


async def one_round(jobs: int, concurrency: int) -> dict[str, float]:
    backend = InMemoryBackend()
    queue = Queue("bench", backend=backend, concurrency=concurrency)

    async def one_by_one() -> None:
        for _ in range(jobs):
            await queue.add(noop.name)

    async def bulk() -> None:
        await queue.add_bulk([{"task_id": noop.name} for _ in range(jobs)])

    figures = {
        "enqueue one by one": await rate(jobs, one_by_one),
        "enqueue bulk": await rate(jobs, bulk),
        "process": await rate(2 * jobs, lambda: queue.run(burst=True)),
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
        values = [r[name] for r in rounds]
        median, low, high = statistics.median(values), min(values), max(values)
        print(f"  {name:<20} median {median:>9,.0f}   min {low:>9,.0f}   max {high:>9,.0f}")


if __name__ == "__main__":
    asyncio.run(main())
