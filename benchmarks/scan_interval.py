"""The scan-interval table of docs/tuning.md, measured on Redis: for each `scan_interval`,
how late delayed jobs start (from `delay_until` to `started_at`: p50, p99, max) and how many
backend calls per second the worker makes meanwhile, read from its own
`asyncmq_backend_operations_total`; beside it, the same for a plain poller that promotes due
jobs every `scan_interval` and nothing else, as a scanner without wake-ups does.

    .venv/bin/python benchmarks/scan_interval.py --jobs 100 --window 20

Calls per second are given idle (the first ten seconds, nothing to do) and while the jobs
come due (every job costs a few: its wake-up, claim and outcome). The worker runs as
`asyncmq worker start` in its own process with `--metrics-port`; a producer here adds the
delayed jobs, due at random moments over the window, in small groups
while the worker waits (so the worker learns of most jobs only through the backend's
wake-up, as it would from a producer elsewhere). The plain poller runs in this process on the
same backend calls (`promote_due`, `claim`, `finish`), sleeping `scan_interval` in between.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Sequence
from pathlib import Path

from asyncmq.backends.redis import RedisBackend
from asyncmq.bench.measure import percentile, remove_queue
from asyncmq.bench.workloads import noop
from asyncmq.job import JobState
from asyncmq.queues import Queue
from asyncmq.transitions import Retention

ROOT = Path(__file__).resolve().parent.parent
INTERVALS = (0.1, 1.0, 5.0)
IDLE_S = 10.0  # how long each scheduler is watched with nothing to do, before the jobs come


def scrape_operations(port: int) -> float:
    """The worker's backend calls so far: the sum of asyncmq_backend_operations_total."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("asyncmq_backend_operations_total{")
    )


async def add_over_window(queue: Queue, jobs: int, window_s: float, seed: int) -> list[str]:
    """Delayed jobs due uniformly over the window, added in ten groups as time passes."""
    rng = random.Random(seed)
    start = time.time()
    ids: list[str] = []
    for group in range(10):
        await asyncio.sleep(max(start + group * window_s / 20 - time.time(), 0))
        now = time.time()
        due = [rng.uniform(now + 0.2, start + window_s) for _ in range(jobs // 10)]
        ids += await queue.add_bulk([{"task_id": noop.name, "delay": at - now} for at in due])
    return ids


async def lateness_s(queue: Queue, ids: Sequence[str]) -> list[float]:
    jobs = [await queue.get_job(job_id) for job_id in ids]
    return sorted(
        job.started_at - job.delay_until
        for job in jobs
        if job is not None and job.started_at is not None and job.delay_until is not None
    )


async def asyncmq_worker(
    url: str, interval: float, jobs: int, window_s: float
) -> tuple[list[float], float, float]:
    """Lateness of each job, and the worker's backend calls per second: idle, and over the
    window with the jobs."""
    backend = RedisBackend(url)
    queue = Queue(f"scan-{uuid.uuid4().hex[:8]}", backend=backend)
    port = _free_port()
    worker = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "asyncmq", "worker", "start", queue.name, "--backend", url,
        "--app", "asyncmq.bench.workloads", "--scan-interval", str(interval),
        "--metrics-port", str(port), "--log-level", "warning",
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        idle_from = await _first_scrape(port)
        await asyncio.sleep(IDLE_S)
        before = scrape_operations(port)
        idle = (before - idle_from) / IDLE_S
        start = time.monotonic()
        ids = await add_over_window(queue, jobs, window_s, seed=int(interval * 1000))
        await asyncio.sleep(max(start + window_s + 1 - time.monotonic(), 0))
        calls = (scrape_operations(port) - before) / (time.monotonic() - start)
        return await lateness_s(queue, ids), idle, calls
    finally:
        worker.terminate()
        await asyncio.wait_for(worker.wait(), 30)
        await remove_queue(backend, queue.name)
        await backend.close()


async def plain_poller(
    url: str, interval: float, jobs: int, window_s: float
) -> tuple[list[float], float, float]:
    """The same jobs run by a loop that promotes, claims and finishes every `interval`."""
    backend = RedisBackend(url)  # the poller's own: its operation counts are the poller's alone
    name = f"scan-plain-{uuid.uuid4().hex[:8]}"
    producer_backend = RedisBackend(url)
    queue = Queue(name, backend=producer_backend)
    await backend.connect()
    lateness: list[float] = []
    stop = asyncio.Event()

    async def poll() -> None:
        while not stop.is_set():
            now = time.time()
            await backend.promote_due(name, now, 1000)
            claimed = await backend.claim(name, "plain-poller", 1000, 30.0, now, None)
            for job in claimed.jobs:
                job.started_at = job.finished_at = time.time()
                job.status = JobState.COMPLETED
                if job.delay_until is not None:
                    lateness.append(job.started_at - job.delay_until)
            if claimed.jobs:
                await backend.finish(claimed.jobs, Retention(ttl_s=600, keep=10_000))
            await asyncio.sleep(interval)

    try:
        poller = asyncio.create_task(poll())
        idle_from = sum(backend.operation_counts.values())
        await asyncio.sleep(IDLE_S)
        before = sum(backend.operation_counts.values())
        idle = (before - idle_from) / IDLE_S
        start = time.monotonic()
        await add_over_window(queue, jobs, window_s, seed=int(interval * 1000))
        await asyncio.sleep(max(start + window_s + 1 - time.monotonic(), 0))
        stop.set()
        await poller
        calls = sum(backend.operation_counts.values()) - before
        return sorted(lateness), idle, calls / (time.monotonic() - start)
    finally:
        await remove_queue(backend, name)
        await backend.close()
        await producer_backend.close()


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def _first_scrape(port: int, deadline_s: float = 30) -> float:
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            return await asyncio.to_thread(scrape_operations, port)
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


def row(name: str, interval: float, lateness: Sequence[float], idle: float, calls: float) -> str:
    ms = [value * 1000 for value in lateness]
    late = f"{percentile(ms, 0.5):.1f} | {percentile(ms, 0.99):.1f} | {max(ms):.1f}" if ms else "- | - | -"
    return f"| {name} | {interval:g} s | {late} | {idle:.1f} | {calls:.1f} | {len(ms)} |"


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--jobs", type=int, default=100, help="delayed jobs per run (a multiple of 10)")
    parser.add_argument("--window", type=float, default=20.0, help="seconds over which they fall due")
    args = parser.parse_args()
    print(f"{args.jobs} delayed jobs due over {args.window:g} s, Redis, one worker")
    print(
        "| scheduler | scan_interval | lateness p50 (ms) | p99 (ms) | max (ms) "
        "| calls/s idle | calls/s with the jobs | jobs |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for interval in INTERVALS:
        print(
            row(
                "asyncmq worker",
                interval,
                *await asyncmq_worker(args.redis, interval, args.jobs, args.window),
            )
        )
        print(
            row("plain poller", interval, *await plain_poller(args.redis, interval, args.jobs, args.window))
        )


if __name__ == "__main__":
    import uvloop

    uvloop.run(main())
