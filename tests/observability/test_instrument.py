"""`instrument()` in any process: a producer with no worker and no backend handed over still
gets its enqueues and its backend's round trips counted; settings alone can turn it on."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry

from asyncmq.backends.redis import RedisBackend
from asyncmq.conf import configure, settings
from asyncmq.observability import instrument, instrumentation, uninstrument
from asyncmq.queues import Queue
from tests.observability.app import ok
from tests.observability.otlp import OTLPReceiver, received_spans

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.usefixtures("cleanup")
async def test_instrument_without_backends_counts_every_backends_round_trips(
    backend: RedisBackend, queue_name: str
) -> None:
    registry = CollectorRegistry()
    first = instrument(registry=registry, tracing=False)
    assert instrument(registry=registry, tracing=False) is first  # idempotent
    await Queue(queue_name, backend=backend).add(ok.name)

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert value("asyncmq_jobs_enqueued_total", queue=queue_name, task=ok.name) == 1
    assert value("asyncmq_backend_operations_total", backend="redis", operation="enqueue") == 1
    assert value("asyncmq_backend_operation_seconds_count", backend="redis", operation="enqueue") == 1
    assert value("asyncmq_build_info", version="0.1.0", backend="redis") == 1
    uninstrument()
    assert instrumentation() is None
    assert (
        registry.get_sample_value("asyncmq_jobs_enqueued_total", {"queue": queue_name, "task": ok.name})
        is None
    )


PRODUCER_AND_WORKER = """
import asyncio
from prometheus_client import REGISTRY
from asyncmq.queues import Queue
from tests.observability.app import ok

async def main():
    queue = Queue("observed")  # the backend of the settings: memory://
    await queue.add(ok.name)
    await queue.run(burst=True)
    for name in ("asyncmq_jobs_enqueued_total", "asyncmq_jobs_completed_total"):
        print(name, REGISTRY.get_sample_value(name, {"queue": "observed", "task": ok.name}))

asyncio.run(main())
"""


def test_settings_alone_turn_on_metrics_and_link_mode_tracing_exported_over_otlp(
    receiver: OTLPReceiver,
) -> None:
    otel = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_TRACES_SAMPLER", "ASYNCMQ_SETTINGS_MODULE")
    env = {name: value for name, value in os.environ.items() if name not in otel}
    env |= {
        "PYTHONPATH": str(ROOT),
        "ASYNCMQ_BACKEND": "memory://",
        "ASYNCMQ_METRICS": "true",
        "ASYNCMQ_TRACING": "true",
        "ASYNCMQ_TRACING_LINK": "true",
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
        "OTEL_SERVICE_NAME": "configured-by-settings",
    }
    done = subprocess.run(
        [sys.executable, "-c", PRODUCER_AND_WORKER], env=env, cwd=ROOT, capture_output=True, timeout=60
    )
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode().split() == [
        "asyncmq_jobs_enqueued_total", "1.0", "asyncmq_jobs_completed_total", "1.0",
    ]  # fmt: skip
    spans = {span.name: (service, span) for service, _, span in received_spans(receiver.requests)}
    assert set(spans) == {"send observed", "process observed"}  # sent by the exit flush
    assert {service for service, _ in spans.values()} == {"configured-by-settings"}
    send, process = spans["send observed"][1], spans["process observed"][1]
    assert process.trace_id != send.trace_id  # link mode: the attempt is a trace of its own...
    assert [(link.trace_id, link.span_id) for link in process.links] == [(send.trace_id, send.span_id)]


def test_the_tracing_setting_without_a_provider_or_an_endpoint_warns_and_traces_nothing(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ASYNCMQ_TRACING", "true")
    configure(None)  # reloaded, from the environment, on next use
    assert settings.tracing is True
    assert instrumentation() is None  # reading settings sets nothing up...
    Queue("q").backend  # noqa: B018 - ...the first use of a queue does
    active = instrumentation()
    assert active is not None
    assert (active.metrics, active.tracing) == (None, False)
    assert "jobs are not traced" in caplog.text


def test_metrics_asked_for_after_tracing_alone_are_turned_on_not_ignored() -> None:
    """`ASYNCMQ_TRACING=true` alone instruments the process without metrics; a later ask for
    metrics (`--metrics-port`, `serve_metrics`) must add them rather than get that instance."""
    uninstrument()
    registry = CollectorRegistry()
    provider = TracerProvider()
    first = instrument(metrics=False, tracer_provider=provider, registry=registry)
    assert (first.metrics, first.tracing) == (None, True)
    active = instrument(registry=registry, tracing=False)
    assert active.metrics is not None  # both on now
    assert active.tracing
    families = {metric.name for metric in registry.collect()}
    assert {"asyncmq_jobs_started", "asyncmq_job_duration_seconds"} <= families
    uninstrument()
    assert not {metric.name for metric in registry.collect()}
    provider.shutdown()
