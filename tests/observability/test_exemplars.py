"""Exemplars: a sampled job's trace id rides on every job-time observation (wait, duration,
latency, schedule lateness), so a dashboard jumps from a slow bucket to the trace that landed
there."""

from __future__ import annotations

import asyncio
import re

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from asyncmq.backends.redis import RedisBackend
from asyncmq.observability.tracing import start_tracing, stop_tracing
from asyncmq.queues import Queue
from tests.observability.app import ok
from tests.observability.support import OPENMETRICS, finish, free_port, scrape, scrape_until, start_worker


@pytest.mark.slow
@pytest.mark.usefixtures("cleanup")
async def test_a_sampled_jobs_trace_id_appears_as_an_exemplar_in_the_openmetrics_scrape(
    backend: RedisBackend, queue_name: str
) -> None:
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    start_tracing(provider)
    try:
        queue = Queue(queue_name, backend=backend)
        await queue.add(ok.name)
        await queue.add(ok.name, delay=0.2)
    finally:
        stop_tracing()
    now, later = (f"{send.context.trace_id:032x}" for send in spans.get_finished_spans())

    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    worker = start_worker(queue_name, port)
    try:
        await scrape_until(url, {f'asyncmq_job_latency_seconds_count{{queue="{queue_name}"}}': 2})
        text = await asyncio.to_thread(scrape, url, OPENMETRICS)
    finally:
        worker.terminate()
        await asyncio.to_thread(finish, worker, 30)

    expected = {
        "asyncmq_job_wait_seconds": {now, later},
        "asyncmq_job_duration_seconds": {now, later},
        "asyncmq_job_latency_seconds": {now, later},
        "asyncmq_schedule_lateness_seconds": {later},  # only the delayed job was due at a time
    }
    for metric, trace_ids in expected.items():
        series = rf'^{metric}_bucket\{{[^}}]*queue="{queue_name}"[^}}]*\}}'
        pattern = series + r' [0-9.]+ # \{trace_id="([0-9a-f]{32})"\}'
        found = set(re.findall(pattern, text, re.MULTILINE))
        assert found, f"no exemplar on {metric}"
        assert found <= trace_ids, metric
    provider.shutdown()
