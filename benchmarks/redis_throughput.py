"""No-op jobs on Redis: enqueue rates, process rate, round trips per job, paced latency and
an idle worker's load on Redis.

    .venv/bin/python benchmarks/redis_throughput.py --redis redis://127.0.0.1:6379/0

Processing runs one worker in this process after the jobs are stored, so enqueue and
processing are timed apart. The latency run paces a producer here at --rate jobs/s
against a worker in its own process (`asyncmq worker start`), and reads each job's
created_at and finished_at from Redis afterwards. Idle load is read from Redis'
INFO commandstats while only an idle worker is connected.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

from asyncmq.backends.redis import RedisBackend
from asyncmq.bench.measure import (
    Spread,
    enqueue_bulk,
    enqueue_one_by_one,
    latencies_ms,
    paced_enqueue,
    percentile,
    process_in_process,
    remove_queue,
    timed_rate,
    wait_for_count,
)
from asyncmq.bench.workloads import WORKLOADS
from asyncmq.queues import Queue

ROOT = Path(__file__).resolve().parent.parent
NOOP = WORKLOADS["noop"]


async def process(queue: Queue, jobs: int, concurrency: int) -> tuple[float, float]:
    """Jobs/s and round trips per job for one in-process worker draining `jobs`."""
    figures = await process_in_process(queue, jobs, concurrency)
    return figures["process_jobs_per_s"], figures["round_trips_per_job"]


def start_worker(url: str, queue: str, concurrency: int) -> subprocess.Popen[bytes]:
    command = [
        sys.executable, "-m", "asyncmq", "worker", "start", queue,
        "--backend", url, "--app", "asyncmq.bench.workloads", "--concurrency", str(concurrency),
    ]  # fmt: skip
    return subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def paced_latency(queue: Queue, rate: int, seconds: float) -> dict[str, float]:
    """Enqueue at `rate` jobs/s, one awaited add at a time; latency = finished - created."""
    jobs = int(rate * seconds)
    before = (await queue.counts())["completed"]
    ids = await paced_enqueue(queue, NOOP, jobs, rate)
    await wait_for_count(queue, "completed", before + jobs)
    latencies = await latencies_ms(queue, ids)
    figures = {f"p{p}": percentile(latencies, p / 100) for p in (50, 95, 99)}
    return figures | {"max": latencies[-1], "jobs": jobs}


async def idle_calls_per_s(url: str, queue: str, seconds: float) -> float:
    """Round trips per second of a worker with nothing to do, counted by its backend."""
    backend = RedisBackend(url)
    worker = Queue(queue, backend=backend).worker(handle_signals=False)
    running = asyncio.create_task(worker.run())
    await asyncio.sleep(1.0)  # past start-up: heartbeat, first scheduler pass
    before = sum(backend.operation_counts.values())
    await asyncio.sleep(seconds)
    calls = sum(backend.operation_counts.values()) - before
    worker.stop()
    await running
    await backend.close()
    return calls / seconds


async def cleanup(backend: RedisBackend, queue: str) -> None:
    keys = [
        key async for key in backend.client.scan_iter(match=f"{backend.prefix}:{{{queue}}}:*", count=1000)
    ]
    for start in range(0, len(keys), 1000):
        await backend.client.delete(*keys[start : start + 1000])
    await backend.client.srem(f"{backend.prefix}:queues", queue)


async def one_round(args: argparse.Namespace) -> dict[str, float]:
    backend = RedisBackend(args.redis)
    await backend.connect()
    name = f"bench-{uuid.uuid4().hex[:8]}"
    queue = Queue(name, backend=backend, keep_finished=args.jobs)
    figures: dict[str, float] = {}
    try:
        figures["enqueue bulk (jobs/s)"] = await timed_rate(
            args.jobs, lambda: enqueue_bulk(queue, NOOP, args.jobs)
        )
        rate, trips = await process(queue, args.jobs, args.concurrency)
        figures["process (jobs/s)"] = rate
        figures["round trips per job"] = trips
        one_by_one = args.jobs // 10
        figures["enqueue one by one (jobs/s)"] = await timed_rate(
            one_by_one, lambda: enqueue_one_by_one(queue, NOOP, one_by_one)
        )
        await process(queue, one_by_one, args.concurrency)
        await remove_queue(backend, name)

        figures["idle worker: Redis round trips/s"] = await idle_calls_per_s(
            args.redis, name, args.idle_seconds
        )
        worker = start_worker(args.redis, name, args.concurrency)
        try:
            await asyncio.sleep(1.5)  # let it start and settle into its blocking wait
            latency = await paced_latency(queue, args.rate, args.latency_seconds)
            for key in ("p50", "p95", "p99", "max"):
                figures[f"latency {key} at {args.rate}/s (ms)"] = latency[key]
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(30)
    finally:
        await remove_queue(backend, name)
        await backend.close()
    return figures


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--redis", default=os.environ.get("ASYNCMQ_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--latency-seconds", type=float, default=10.0)
    parser.add_argument("--idle-seconds", type=float, default=5.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio", help="event loop here")
    args = parser.parse_args()
    rounds = [await one_round(args) for _ in range(args.repeat)]
    print(
        f"Redis {args.redis}: {args.jobs} no-op jobs, concurrency {args.concurrency}, "
        f"{args.repeat} rounds, {args.loop} loop"
    )
    for name in rounds[0]:
        spread = Spread.of([r[name] for r in rounds])
        print(
            f"  {name:<36} median {spread.median:>10,.2f}   min {spread.min:>10,.2f}"
            f"   max {spread.max:>10,.2f}"
        )


if __name__ == "__main__":
    if "uvloop" in sys.argv:
        import uvloop

        uvloop.run(main())
    else:
        asyncio.run(main())
