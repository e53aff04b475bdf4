"""`instrument()` in any process: a producer with no worker and no backend handed over still
gets its enqueues and its backend's round trips counted."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from asyncmq.backends.redis import RedisBackend
from asyncmq.observability import instrument, instrumentation, uninstrument
from asyncmq.queues import Queue
from tests.observability.app import ok


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
