"""Instructions a worker executes per job, counted by valgrind: what observability costs,
free of the machine's noise. Rates on a shared two-core machine drift by a third between
rounds; an instruction count moves by about 1%.

    .venv/bin/python benchmarks/instructions_per_job.py --jobs 2000

Each variant of `instrumentation_overhead.py` runs, plus tracing at 0% (every producer
unsampled: the cost every unsampled job pays, without the sampled 1%). For each, a queue is
filled outside valgrind, then a burst worker drains it under `valgrind --tool=callgrind`;
this is done for `jobs` and for three times as many, and the difference, divided by the
extra jobs, is the cost of one job with start-up and shutdown cancelled out. Needs valgrind
(`apt-get install valgrind`); a run takes a few minutes, two variants at a time.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = ("off", "metrics", "metrics + tracing 0%", "metrics + tracing 1%", "metrics + tracing 100%")
_COLLECTED = re.compile(r"Collected : (\d+)")


def count(variant: str, jobs: int, redis: str) -> int:
    """Instructions of a worker draining `jobs` jobs of `variant`."""
    queue = f"instructions-{uuid.uuid4().hex[:8]}"
    child = [sys.executable, __file__, "--redis", redis, "--child", variant, str(jobs), queue]
    subprocess.run([*child, "fill"], check=True, cwd=ROOT)
    valgrind = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]
    done = subprocess.run([*valgrind, *child, "drain"], check=True, cwd=ROOT, capture_output=True, text=True)
    match = _COLLECTED.search(done.stderr)
    if match is None:
        raise RuntimeError(f"valgrind reported no count:\n{done.stderr[-2000:]}")
    return int(match.group(1))


def per_job(variant: str, jobs: int, redis: str) -> float:
    small, large = count(variant, jobs, redis), count(variant, 3 * jobs, redis)
    return (large - small) / (2 * jobs)


async def child(redis: str, variant: str, jobs: int, queue_name: str, phase: str) -> None:
    """One phase in a process of its own: `fill` the queue, or `drain` it and remove it."""
    sys.path.insert(0, str(ROOT))
    from asyncmq.backends.redis import RedisBackend
    from asyncmq.bench.measure import remove_queue
    from asyncmq.queues import Queue
    from benchmarks.instrumentation_overhead import drain, fill, instrumented

    backend = RedisBackend(redis)
    queue = Queue(queue_name, backend=backend, keep_finished=jobs)
    async with instrumented(variant):
        try:
            if phase == "fill":
                await fill(queue, jobs)
            else:
                await drain(queue, concurrency=10)
                counts = await queue.counts()
                await remove_queue(backend, queue_name)
                if counts["completed"] != jobs:
                    raise RuntimeError(f"{jobs} jobs were run, not all completed: {counts}")
        finally:
            await backend.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument(
        "--child", nargs=4, metavar=("VARIANT", "JOBS", "QUEUE", "PHASE"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.child:
        variant, jobs, queue, phase = args.child
        import uvloop

        uvloop.run(child(args.redis, variant, int(jobs), queue, phase))  # as the benchmark runs
        return
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed: apt-get install valgrind")
    with ThreadPoolExecutor(2) as pool:
        costs = dict(
            zip(VARIANTS, pool.map(lambda v: per_job(v, args.jobs, args.redis), VARIANTS), strict=True)
        )
    print(f"instructions per no-op job on Redis (valgrind, {args.jobs} and {3 * args.jobs} jobs)")
    for variant, cost in costs.items():
        extra = cost - costs["off"]
        print(f"  {variant:<24} {cost:>9,.0f}  ({extra:+,.0f}, {extra / costs['off']:+.1%})")


if __name__ == "__main__":
    main()
