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
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from asyncmq.backends.redis import RedisBackend
from asyncmq.queues import Queue

ROOT = Path(__file__).resolve().parent.parent
NOOP = "benchmarks.tasks.noop"


async def timed_rate(jobs: int, call: Any) -> float:
    start = time.perf_counter()
    await call
    return jobs / (time.perf_counter() - start)


async def enqueue_one_by_one(queue: Queue, jobs: int) -> None:
    for _ in range(jobs):
        await queue.add(NOOP)


async def enqueue_bulk(queue: Queue, jobs: int, chunk: int = 10_000) -> None:
    for start in range(0, jobs, chunk):
        await queue.add_bulk([{"task_id": NOOP} for _ in range(min(chunk, jobs - start))])


async def process(queue: Queue, jobs: int, concurrency: int) -> tuple[float, float]:
    """Jobs/s and round trips per job for one in-process worker draining `jobs`."""
    import benchmarks.tasks  # noqa: F401  (registers the task)

    backend = queue.backend
    before = sum(backend.operation_counts.values())
    worker = queue.worker(burst=True, concurrency=concurrency, handle_signals=False)
    rate = await timed_rate(jobs, worker.run())
    trips = sum(backend.operation_counts.values()) - before
    return rate, trips / jobs


def start_worker(url: str, queue: str, concurrency: int) -> subprocess.Popen[bytes]:
    command = [
        sys.executable, "-m", "asyncmq", "worker", "start", queue,
        "--backend", url, "--app", "benchmarks.tasks", "--concurrency", str(concurrency),
    ]  # fmt: skip
    return subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def wait_until_idle(queue: Queue, expected_completed: int, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while (await queue.counts())["completed"] < expected_completed:
        if time.monotonic() > deadline:
            raise TimeoutError(f"workers did not complete {expected_completed} jobs in {timeout_s}s")
        await asyncio.sleep(0.05)


async def paced_latency(queue: Queue, rate: int, seconds: float) -> dict[str, float]:
    """Enqueue at `rate` jobs/s, one awaited add at a time; latency = finished - created."""
    jobs = int(rate * seconds)
    ids = []
    start = time.perf_counter()
    for i in range(jobs):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        ids.append(await queue.add(NOOP))
    await wait_until_idle(queue, jobs)
    backend = queue.backend
    assert isinstance(backend, RedisBackend)
    async with backend.client.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.hmget(f"{backend.prefix}:{{{queue.name}}}:job:{job_id}", "created_at", "finished_at")
        rows = await pipe.execute()
    latencies = sorted((float(done) - float(created)) * 1000 for created, done in rows)
    cut = statistics.quantiles(latencies, n=100)
    return {"p50": cut[49], "p95": cut[94], "p99": cut[98], "max": latencies[-1], "jobs": jobs}


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
        figures["enqueue bulk (jobs/s)"] = await timed_rate(args.jobs, enqueue_bulk(queue, args.jobs))
        rate, trips = await process(queue, args.jobs, args.concurrency)
        figures["process (jobs/s)"] = rate
        figures["round trips per job"] = trips
        one_by_one = args.jobs // 10
        figures["enqueue one by one (jobs/s)"] = await timed_rate(
            one_by_one, enqueue_one_by_one(queue, one_by_one)
        )
        rate, _ = await process(queue, one_by_one, args.concurrency)
        await cleanup(backend, name)

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
        await cleanup(backend, name)
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
    sys.path.insert(0, str(ROOT))
    rounds = [await one_round(args) for _ in range(args.repeat)]
    print(
        f"Redis {args.redis}: {args.jobs} no-op jobs, concurrency {args.concurrency}, "
        f"{args.repeat} rounds, {args.loop} loop"
    )
    for name in rounds[0]:
        values = [r[name] for r in rounds]
        median, low, high = statistics.median(values), min(values), max(values)
        print(f"  {name:<36} median {median:>10,.2f}   min {low:>10,.2f}   max {high:>10,.2f}")


if __name__ == "__main__":
    if "uvloop" in sys.argv:
        import uvloop

        uvloop.run(main())
    else:
        asyncio.run(main())
