"""docs/tuning.md says: concurrency 10-50 for I/O-bound tasks, 1-4 for CPU-bound ones. This
measures why, on Redis: one worker in this process drains stored jobs at each concurrency,
for a task that awaits 10 ms (I/O), one that holds the event loop for 1 ms (CPU, async) and
one that computes for 1 ms in the worker's threads (CPU, a plain `def`).

    .venv/bin/python benchmarks/concurrency_sweep.py --repeat 3

Each cell is the median over rounds of the process rate (jobs/s) and of the worker's CPU
time per job; rounds interleave the concurrencies, so drift hits them alike.
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid

from asyncmq.backends import backend_from_url
from asyncmq.bench.measure import enqueue_bulk, process_in_process, remove_queue
from asyncmq.bench.workloads import WORKLOADS, Workload
from asyncmq.queues import Queue
from asyncmq.tasks import task

CONCURRENCIES = (1, 2, 4, 10, 20, 50, 100)


def _loops_per_ms() -> int:
    """A fixed amount of work, not a deadline: threads that share the GIL would each see
    their deadline pass while another holds it, and finish early."""
    start, loops = time.perf_counter(), 0
    while time.perf_counter() - start < 0.05:
        for _ in range(1000):
            pass
        loops += 1000
    return loops // 50


_LOOPS = _loops_per_ms()


@task(queue="bench", name="benchmarks.concurrency_sweep.cpu_in_thread")
def cpu_in_thread() -> None:
    """About 1 ms of pure-Python work in a worker thread: threads take turns on the GIL."""
    for _ in range(_LOOPS):
        pass


SWEPT = {
    "I/O (awaits 10 ms)": WORKLOADS["io"],
    "CPU, async (1 ms on the loop)": WORKLOADS["cpu"],
    "CPU, sync (1 ms in a thread)": Workload("cpu-thread", cpu_in_thread.name, (), "1 ms in a thread"),
}


def jobs_for(workload: Workload, concurrency: int) -> int:
    """Enough jobs for about a second or two of work at any concurrency."""
    if workload.name == "io":
        return max(200, min(5000, 100 * concurrency))
    return 1500


async def one(url: str, workload: Workload, concurrency: int) -> tuple[float, float]:
    backend = backend_from_url(url)
    queue = Queue(f"sweep-{uuid.uuid4().hex[:8]}", backend=backend, keep_finished=10_000)
    jobs = jobs_for(workload, concurrency)
    try:
        await enqueue_bulk(queue, workload, jobs)
        figures = await process_in_process(queue, jobs, concurrency)
        return figures["process_jobs_per_s"], figures["worker_cpu_s_per_1000_jobs"]
    finally:
        await remove_queue(backend, queue.name)
        await backend.close()


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(
        f"one worker, {args.backend}, median of {args.repeat} interleaved rounds; jobs/s (worker CPU ms/job)"
    )
    print("| task | " + " | ".join(f"c={c}" for c in CONCURRENCIES) + " |")
    print("| --- |" + " ---: |" * len(CONCURRENCIES))
    for label, workload in SWEPT.items():
        rates: dict[int, list[float]] = {c: [] for c in CONCURRENCIES}
        cpu: dict[int, list[float]] = {c: [] for c in CONCURRENCIES}
        for _ in range(args.repeat):
            for concurrency in CONCURRENCIES:
                rate, cpu_s_per_1000 = await one(args.backend, workload, concurrency)
                rates[concurrency].append(rate)
                cpu[concurrency].append(cpu_s_per_1000)
        cells = [
            f"{statistics.median(rates[c]):,.0f} ({statistics.median(cpu[c]):.2f})" for c in CONCURRENCIES
        ]
        print(f"| {label} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    import uvloop

    uvloop.run(main())
