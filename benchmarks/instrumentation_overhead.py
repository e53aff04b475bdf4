"""What observability costs a worker: no-op jobs on Redis processed with instrumentation off,
metrics on, and metrics plus tracing sampled at 1% and at 100%.

    .venv/bin/python benchmarks/instrumentation_overhead.py --jobs 50000 --repeat 3

Variants are interleaved round by round in one run, each round in a rotated order, so the
machine's drift hits them all alike; each rate is the median over rounds, and each ratio the
median over rounds of the rate against "off" in the same round. The worker's CPU time per
job (this process, span export thread included) is the steadier figure on a noisy machine.

Tracing samples at the producer (a parent-based ratio sampler), as in production: the worker
follows the decision stored with each job. The producer adds jobs in batches of 100, each
its own `send` span and sampling decision, so about 1% of the jobs are sampled at 1%. Spans
go to a batch processor whose exporter drops them, so the cost measured is asyncmq's and the
SDK's, not a collector's.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from prometheus_client import CollectorRegistry

from asyncmq.backends.redis import RedisBackend
from asyncmq.bench.measure import remove_queue
from asyncmq.observability import instrument, uninstrument
from asyncmq.queues import Queue

ROOT = Path(__file__).resolve().parent.parent
BATCH = 100
VARIANTS = ("off", "metrics", "metrics + tracing 1%", "metrics + tracing 100%")


class _Drop(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def _provider(ratio: float) -> TracerProvider:
    provider = TracerProvider(sampler=ParentBased(TraceIdRatioBased(ratio)))
    provider.add_span_processor(BatchSpanProcessor(_Drop(), max_queue_size=100_000))
    return provider


@contextlib.asynccontextmanager
async def instrumented(variant: str) -> AsyncIterator[None]:
    """This process instrumented as `variant` says, while inside."""
    provider = None
    if variant != "off":
        if "tracing" in variant:  # "... tracing N%": sampled at N%
            provider = _provider(float(variant.rsplit(" ", 1)[1].rstrip("%")) / 100)
        instrument(registry=CollectorRegistry(), tracing=provider is not None, tracer_provider=provider)
    try:
        yield
    finally:
        uninstrument()
        if provider is not None:
            provider.shutdown()


async def fill(queue: Queue, jobs: int) -> None:
    for _ in range(0, jobs, BATCH):  # one `send` span per batch: ~1% of the jobs sampled at 1%
        await queue.add_bulk([{"task_id": "benchmarks.tasks.noop"} for _ in range(BATCH)])


async def drain(queue: Queue, concurrency: int) -> None:
    """Run a burst worker until the queue is empty."""
    import benchmarks.tasks  # noqa: F401  (registers the task)

    await queue.worker(burst=True, concurrency=concurrency, handle_signals=False).run()


async def one_variant(url: str, variant: str, jobs: int, concurrency: int) -> tuple[float, float]:
    """The worker's throughput (jobs/s) and its own CPU time per job (µs) for one variant."""
    backend = RedisBackend(url)
    queue = Queue(f"overhead-{uuid.uuid4().hex[:8]}", backend=backend, keep_finished=jobs)
    try:
        async with instrumented(variant):
            await fill(queue, jobs)
            start, cpu = time.perf_counter(), time.process_time()
            await drain(queue, concurrency)
            return jobs / (time.perf_counter() - start), (time.process_time() - cpu) / jobs * 1e6
    finally:
        await remove_queue(backend, queue.name)
        await backend.close()


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--jobs", type=int, default=50_000)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    rates: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    cpu: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    for round_number in range(args.repeat):
        shift = round_number % len(VARIANTS)  # each variant takes every place in the order
        for variant in VARIANTS[shift:] + VARIANTS[:shift]:
            gc.collect()  # no variant pays for the garbage of the one before
            rate, cpu_per_job = await one_variant(args.redis, variant, args.jobs, args.concurrency)
            rates[variant].append(rate)
            cpu[variant].append(cpu_per_job)
    base_cpu = statistics.median(cpu["off"])
    print(
        f"{args.jobs} no-op jobs on Redis, concurrency {args.concurrency}, {args.repeat} interleaved rounds"
    )
    for variant, values in rates.items():
        # Each round's rate against "off" in the same round: drift between rounds cancels out.
        ratio = statistics.median(rate / off for rate, off in zip(values, rates["off"], strict=True))
        spread = f"{min(values):,.0f}-{max(values):,.0f}"
        extra = statistics.median(cpu[variant]) - base_cpu
        print(
            f"  {variant:<24} {statistics.median(values):>9,.0f} jobs/s  ({ratio:.1%} of off; {spread})"
            f"  worker CPU {statistics.median(cpu[variant]):5.1f} µs/job ({extra:+.1f})"
        )


if __name__ == "__main__":
    import uvloop

    uvloop.run(main())
