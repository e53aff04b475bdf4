"""What observability costs a worker: no-op jobs on Redis processed with instrumentation off,
metrics on, and metrics plus tracing sampled at 1% and at 100%.

    .venv/bin/python benchmarks/instrumentation_overhead.py --jobs 50000 --repeat 3

Variants are interleaved round by round in one run, so the machine's drift hits them all
alike; each figure is the median over rounds, and the ratio is against "off" in the same
run. Tracing samples at the producer (a parent-based ratio sampler), as in production: the
worker follows the decision stored with each job. Spans go to a batch processor whose
exporter drops them, so the cost measured is asyncmq's and the SDK's, not a collector's.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from prometheus_client import CollectorRegistry

from asyncmq.backends.redis import RedisBackend
from asyncmq.observability import instrument, uninstrument
from asyncmq.queues import Queue

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = ("off", "metrics", "metrics + tracing 1%", "metrics + tracing 100%")


class _Drop(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def _provider(ratio: float) -> TracerProvider:
    provider = TracerProvider(sampler=ParentBased(TraceIdRatioBased(ratio)))
    provider.add_span_processor(BatchSpanProcessor(_Drop(), max_queue_size=100_000))
    return provider


async def one_variant(url: str, variant: str, jobs: int, concurrency: int) -> float:
    import benchmarks.tasks  # noqa: F401  (registers the task)

    backend = RedisBackend(url)
    queue = Queue(f"overhead-{uuid.uuid4().hex[:8]}", backend=backend, keep_finished=jobs)
    provider = None
    if variant != "off":
        ratio = 1.0 if variant.endswith("100%") else 0.01
        provider = _provider(ratio) if "tracing" in variant else None
        instrument(registry=CollectorRegistry(), tracing=provider is not None, tracer_provider=provider)
    try:
        await queue.add_bulk([{"task_id": "benchmarks.tasks.noop"} for _ in range(jobs)])
        worker = queue.worker(burst=True, concurrency=concurrency, handle_signals=False)
        start = time.perf_counter()
        await worker.run()
        return jobs / (time.perf_counter() - start)
    finally:
        uninstrument()
        if provider is not None:
            provider.shutdown()
        from benchmarks.redis_throughput import cleanup

        await cleanup(backend, queue.name)
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
    for _ in range(args.repeat):
        for variant in VARIANTS:
            rates[variant].append(await one_variant(args.redis, variant, args.jobs, args.concurrency))
    base = statistics.median(rates["off"])
    print(
        f"{args.jobs} no-op jobs on Redis, concurrency {args.concurrency}, {args.repeat} interleaved rounds"
    )
    for variant, values in rates.items():
        median = statistics.median(values)
        spread = f"{min(values):,.0f}-{max(values):,.0f}"
        print(f"  {variant:<24} {median:>9,.0f} jobs/s  ({median / base:.1%} of off; {spread})")


if __name__ == "__main__":
    import uvloop

    uvloop.run(main())
