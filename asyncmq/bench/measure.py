"""Timing one workload on one backend: each figure measured on its own (see docs/tuning.md).

A round stores `jobs` jobs one `add` at a time and `jobs` more in bulk (two enqueue rates),
then one worker drains all of them (the process rate, the worker's CPU time and peak memory),
then a producer paces jobs at `rate` per second into a running worker (end-to-end latency,
read from each job's `created_at` and `finished_at`). Rounds repeat; each figure is reported as
its median and range, so one noisy round cannot pass for the machine's speed.

The worker runs in this process, or as `processes` worker processes (`asyncmq worker start`)
on a backend they can share. In this process, CPU is `time.process_time` and memory the
peak RSS of the processing phase (at least what the process held before it); worker
processes' CPU is each one's own rusage (`wait4`), start-up included, and their memory the
largest peak RSS among them.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import resource
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from asyncmq.backends import backend_from_url
from asyncmq.bench.workloads import WORKLOADS, Workload
from asyncmq.job import JobState
from asyncmq.queues import Queue

if TYPE_CHECKING:
    from asyncmq.backends.base import BaseBackend
    from asyncmq.bench.profile import Profiler

__all__ = [
    "METRICS",
    "PHASES",
    "BenchConfig",
    "Progress",
    "Spread",
    "enqueue_bulk",
    "enqueue_one_by_one",
    "latencies_ms",
    "paced_enqueue",
    "percentile",
    "process_in_process",
    "remove_queue",
    "run_bench",
    "timed_rate",
    "wait_for_count",
]

#: Every figure a round produces, with the label the table and the plot show.
METRICS: dict[str, str] = {
    "enqueue_one_by_one_jobs_per_s": "enqueue one by one (jobs/s)",
    "enqueue_bulk_jobs_per_s": "enqueue bulk (jobs/s)",
    "process_jobs_per_s": "process (jobs/s)",
    "worker_cpu_s_per_1000_jobs": "worker CPU (s per 1,000 jobs)",
    "worker_peak_rss_mb": "worker peak RSS (MB)",
    "round_trips_per_job": "backend round trips per job",
    "latency_p50_ms": "latency p50 (ms)",
    "latency_p95_ms": "latency p95 (ms)",
    "latency_p99_ms": "latency p99 (ms)",
}
#: The steps of one round, in order; progress is told each as it starts.
PHASES = ("enqueue one by one", "enqueue bulk", "process", "latency")
_BULK_CHUNK = 1000
_LATENCY_CAP_S = 5.0  # the paced run lasts at most this long, whatever --jobs says
_POLL_S = 0.01
_WAIT_S = 300.0
_READ_BATCH = 200
# ru_maxrss is in KiB on Linux, in bytes on macOS.
_RSS_UNIT_MB = 1 / 1024 / 1024 if sys.platform == "darwin" else 1 / 1024
_CLEAR_REFS = Path("/proc/self/clear_refs")
_STATUS = Path("/proc/self/status")


@dataclass(frozen=True, slots=True)
class Spread:
    """A figure over repetitions: the median, and the range it came from."""

    median: float
    min: float
    max: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        return cls(statistics.median(values), min(values), max(values))


@dataclass(frozen=True, slots=True)
class BenchConfig:
    """One `asyncmq bench` run. `processes=None` runs the worker in this process."""

    backend_url: str = "memory://"
    workloads: tuple[str, ...] = ("noop",)
    jobs: int = 10_000
    concurrency: int = 10
    processes: int | None = None
    repeat: int = 3
    rate: int = 1000
    #: Each round's queue is this plus a unique suffix, so runs can share a server.
    queue_prefix: str = "bench"

    @property
    def latency_jobs(self) -> int:
        """Jobs in the paced run: `jobs`, but no more than a few seconds' worth at `rate`."""
        return max(1, min(self.jobs, int(self.rate * _LATENCY_CAP_S)))

    @property
    def steps(self) -> int:
        return len(self.workloads) * self.repeat * len(PHASES)


#: Told the name of each step as it starts ("noop: process"), so a display names the running one.
Progress = Callable[[str], None]


# -- building blocks, shared with the scripts in benchmarks/ --------------------------------
async def timed_rate(jobs: int, action: Callable[[], Awaitable[object]]) -> float:
    """Jobs per second of awaiting `action()`, by the wall clock. A callable, not an awaitable,
    so that nothing of the work starts before the clock does."""
    start = time.perf_counter()
    await action()
    return jobs / (time.perf_counter() - start)


async def enqueue_one_by_one(queue: Queue, workload: Workload, jobs: int) -> list[str]:
    """One awaited `add` per job: what a web handler adding one job per request pays."""
    return [await queue.add(workload.task_id, workload.args) for _ in range(jobs)]


async def enqueue_bulk(queue: Queue, workload: Workload, jobs: int) -> None:
    """`add_bulk` in chunks, so a large run never builds one huge request."""
    for start in range(0, jobs, _BULK_CHUNK):
        await queue.add_bulk([workload.spec() for _ in range(min(_BULK_CHUNK, jobs - start))])


async def process_in_process(queue: Queue, jobs: int, concurrency: int) -> dict[str, float]:
    """A burst worker in this process drains the `jobs` stored: its rate, CPU time per 1,000
    jobs, this process's peak RSS (enqueued jobs included, on the in-memory backend) and the
    backend round trips it made per job."""
    backend = queue.backend
    trips = sum(backend.operation_counts.values())
    worker = queue.worker(burst=True, concurrency=concurrency, handle_signals=False)
    _reset_peak_rss()
    cpu_s = time.process_time()
    rate = await timed_rate(jobs, worker.run)
    cpu_s = time.process_time() - cpu_s
    trips = sum(backend.operation_counts.values()) - trips
    figures = {
        "process_jobs_per_s": rate,
        "worker_cpu_s_per_1000_jobs": cpu_s / jobs * 1000,
        "worker_peak_rss_mb": _peak_rss_mb(),
    }
    if trips:  # the in-memory backend makes none: a row of zeros would only mislead
        figures["round_trips_per_job"] = trips / jobs
    return figures


def _reset_peak_rss() -> None:
    """Restart this process's RSS high-water mark (Linux), so a round's peak is its own and
    not that of an earlier, heavier workload; elsewhere the peak is the process's to date."""
    with contextlib.suppress(OSError):
        _CLEAR_REFS.write_text("5")


def _vm_hwm_mb(status: Path) -> float | None:
    """The peak RSS a process's /proc status reports, or None where there is no /proc."""
    with contextlib.suppress(OSError):
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return None


def _peak_rss_mb() -> float:
    peak_mb = _vm_hwm_mb(_STATUS)
    return (
        peak_mb if peak_mb is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * _RSS_UNIT_MB
    )


def percentile(ordered: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile of sorted values: exact for small samples, no interpolation."""
    return ordered[min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))]


async def latencies_ms(queue: Queue, ids: Sequence[str]) -> list[float]:
    """Created-to-finished time of each finished job, sorted, read back from the backend."""
    found: list[float] = []
    for start in range(0, len(ids), _READ_BATCH):
        jobs = await asyncio.gather(*(queue.get_job(job_id) for job_id in ids[start : start + _READ_BATCH]))
        found += [(job.finished_at - job.created_at) * 1000 for job in jobs if job.finished_at is not None]
    return sorted(found)


async def remove_queue(backend: BaseBackend, name: str) -> None:
    """Delete the round's queue and all it holds."""
    await backend.delete_queue(name)


# -- worker processes -----------------------------------------------------------------------
def _spawn_workers(config: BenchConfig, queue: str, *, burst: bool) -> list[subprocess.Popen[bytes]]:
    """`asyncmq worker start` processes; they keep every finished job, which the figures read.
    The backend URL goes in their environment: a command line is readable by every local user."""
    command = [
        sys.executable, "-m", "asyncmq", "worker", "start", queue,
        "--app", "asyncmq.bench.workloads", "--concurrency", str(config.concurrency), "--log-level", "error",
    ]  # fmt: skip
    env = {
        **os.environ,
        "ASYNCMQ_BACKEND": config.backend_url,
        "ASYNCMQ_KEEP_FINISHED_JOBS": str(2 * config.jobs + config.latency_jobs),
    }
    return [
        subprocess.Popen(
            [*command, *(["--burst"] if burst else [])],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(config.processes or 1)
    ]


async def _stop(children: Sequence[subprocess.Popen[bytes]]) -> None:
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    for child in children:
        code = await asyncio.to_thread(child.wait, _WAIT_S)
        if code != 0:
            raise RuntimeError(f"worker process {child.pid} exited with {code}")


def _reap_now(child: subprocess.Popen[bytes]) -> resource.struct_rusage | None:
    """Reap `child` if it has exited (never waits), keeping its exit code; else None."""
    pid, status, usage = os.wait4(child.pid, os.WNOHANG)
    if not pid:
        return None
    child.returncode = os.waitstatus_to_exitcode(status)
    return usage


async def _reap_watching(child: subprocess.Popen[bytes]) -> tuple[float, float]:
    """CPU seconds and peak RSS (MB) of a burst worker process, once it has exited. The peak is
    read from /proc while it runs (Linux): a child's own ru_maxrss starts at its parent's size,
    inherited through fork and exec. `RUSAGE_CHILDREN` would also mix in earlier children."""
    status = Path(f"/proc/{child.pid}/status")
    peak_mb = 0.0
    while (usage := _reap_now(child)) is None:
        peak_mb = max(peak_mb, _vm_hwm_mb(status) or 0.0)
        await asyncio.sleep(_POLL_S)
    if child.returncode != 0:
        raise RuntimeError(f"worker process {child.pid} exited with {child.returncode}")
    return usage.ru_utime + usage.ru_stime, peak_mb or usage.ru_maxrss * _RSS_UNIT_MB


async def _process_in_children(queue: Queue, config: BenchConfig, jobs: int) -> dict[str, float]:
    """Burst worker processes drain the `jobs` stored. The rate spans the first job's start
    to the last one's finish, so the processes' start-up does not count against it."""
    children = _spawn_workers(config, queue.name, burst=True)
    usages = await asyncio.gather(*(_reap_watching(child) for child in children))
    done = await queue.list_jobs(JobState.COMPLETED, limit=jobs)
    span_s = max(job.finished_at or 0.0 for job in done) - min(job.started_at or 0.0 for job in done)
    return {
        "process_jobs_per_s": len(done) / span_s,
        "worker_cpu_s_per_1000_jobs": sum(cpu_s for cpu_s, _ in usages) / jobs * 1000,
        "worker_peak_rss_mb": max(rss_mb for _, rss_mb in usages),
    }


# -- paced latency --------------------------------------------------------------------------
async def wait_for_count(queue: Queue, state: str, count: int) -> None:
    """Poll until `count` jobs are in `state`: a job's end is stored, not announced across processes."""
    deadline = time.monotonic() + _WAIT_S
    while (await queue.counts())[state] < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"queue {queue.name!r}: fewer than {count} {state} jobs after {_WAIT_S:.0f} s")
        await asyncio.sleep(_POLL_S)


async def _wait_for_workers(queue: Queue, count: int) -> None:
    """Until `count` workers have registered on the queue, ready to claim."""
    deadline = time.monotonic() + _WAIT_S
    while len((await queue.stats()).workers) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"queue {queue.name!r}: {count} worker(s) did not start")
        await asyncio.sleep(_POLL_S)


@asynccontextmanager
async def _running_worker(queue: Queue, config: BenchConfig) -> AsyncIterator[None]:
    """A worker that waits for jobs: in this process, or `processes` processes once all run."""
    if config.processes is None:
        worker = queue.worker(concurrency=config.concurrency, handle_signals=False)
        running = asyncio.create_task(worker.run())
        try:
            await _wait_for_workers(queue, 1)  # the first jobs' latency is not the worker's start-up
            yield
        finally:
            worker.stop()
            await running
        return
    children = _spawn_workers(config, queue.name, burst=False)
    try:
        await _wait_for_workers(queue, len(children))
        yield
    finally:
        await _stop(children)


async def paced_enqueue(queue: Queue, workload: Workload, jobs: int, rate: int) -> list[str]:
    """Add `jobs` jobs at `rate` per second, on a schedule that a slow add does not shift."""
    ids: list[str] = []
    start = time.perf_counter()
    for index in range(jobs):
        delay_s = start + index / rate - time.perf_counter()
        if delay_s > 0:
            await asyncio.sleep(delay_s)
        ids.append(await queue.add(workload.task_id, workload.args))
    return ids


async def _latency(queue: Queue, workload: Workload, config: BenchConfig, before: int) -> dict[str, float]:
    jobs = config.latency_jobs
    async with _running_worker(queue, config):
        ids = await paced_enqueue(queue, workload, jobs, config.rate)
        await wait_for_count(queue, "completed", before + jobs)
    ordered = await latencies_ms(queue, ids)
    return {f"latency_p{p}_ms": percentile(ordered, p / 100) for p in (50, 95, 99)}


# -- rounds ---------------------------------------------------------------------------------
async def _process(
    queue: Queue, config: BenchConfig, jobs: int, profiler: Profiler | None
) -> dict[str, float]:
    if config.processes is not None:
        return await _process_in_children(queue, config, jobs)
    if profiler is None:
        return await process_in_process(queue, jobs, config.concurrency)
    with profiler.profiling():
        return await process_in_process(queue, jobs, config.concurrency)


async def _one_round(
    config: BenchConfig, workload: Workload, progress: Progress, profiler: Profiler | None
) -> dict[str, float]:
    backend = backend_from_url(config.backend_url)
    await backend.connect()
    name = f"{config.queue_prefix}-{uuid.uuid4().hex[:12]}"
    queue = Queue(name, backend=backend, keep_finished=2 * config.jobs + config.latency_jobs)
    jobs = config.jobs
    try:
        progress(f"{workload.name}: {PHASES[0]}")
        figures = {
            "enqueue_one_by_one_jobs_per_s": await timed_rate(
                jobs, lambda: enqueue_one_by_one(queue, workload, jobs)
            )
        }
        progress(f"{workload.name}: {PHASES[1]}")
        bulk = await timed_rate(jobs, lambda: enqueue_bulk(queue, workload, jobs))
        figures["enqueue_bulk_jobs_per_s"] = bulk
        progress(f"{workload.name}: {PHASES[2]}")
        figures |= await _process(queue, config, 2 * jobs, profiler)
        progress(f"{workload.name}: {PHASES[3]}")
        figures |= await _latency(queue, workload, config, 2 * jobs)
        return figures
    finally:
        await remove_queue(backend, name)
        await backend.close()


async def run_bench(
    config: BenchConfig, progress: Progress = lambda step: None, profiler: Profiler | None = None
) -> dict[str, dict[str, Spread]]:
    """Every workload of `config`, `repeat` rounds each: figure name to its spread, per workload.

    Workloads run one after another, never side by side, so none pays for another's load.
    """
    results: dict[str, dict[str, Spread]] = {}
    for name in config.workloads:
        rounds = [await _one_round(config, WORKLOADS[name], progress, profiler) for _ in range(config.repeat)]
        measured = [metric for metric in METRICS if metric in rounds[0]]
        results[name] = {metric: Spread.of([r[metric] for r in rounds]) for metric in measured}
    return results
