"""asyncmq's observability plugin: Prometheus metrics and OpenTelemetry traces.

It subscribes to the engine's seams (`asyncmq.core.event.event_emitter`, `asyncmq.core.hooks`
and backend operation hooks); the engine never imports it. Needs the extra:
`pip install 'asyncmq[observability]'`.

    from asyncmq.observability import instrument
    instrument()   # in any process: workers, and producers such as an API server

`instrument()` is idempotent; `uninstrument()` removes every listener and hook.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from asyncmq.errors import ConfigurationError

try:
    from prometheus_client import REGISTRY, CollectorRegistry
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ConfigurationError("observability needs its extra: pip install 'asyncmq[observability]'") from exc

from asyncmq.observability.collector import QueueStateCollector
from asyncmq.observability.metrics import JobMetrics, build_info
from asyncmq.observability.server import MetricsServer

if TYPE_CHECKING:
    from asyncmq.backends.base import BaseBackend

__all__ = [
    "Instrumentation",
    "instrument",
    "instrumentation",
    "serve_metrics",
    "serve_multiprocess_metrics",
    "uninstrument",
]


@dataclass
class Instrumentation:
    registry: CollectorRegistry
    metrics: JobMetrics | None = None
    tracing: bool = False


_active: Instrumentation | None = None


def instrument(
    metrics: bool = True,
    tracing: bool = True,
    registry: CollectorRegistry | None = None,
    tracer_provider: Any = None,
    backends: tuple[BaseBackend, ...] | list[BaseBackend] = (),
) -> Instrumentation:
    """Turn on metrics (into `registry`, default the global one) and tracing (with
    `tracer_provider`, default the global one if an SDK provider is set there). Calling it
    again returns the same instrumentation. Every backend's round trips are counted; those in
    `backends` are named in `asyncmq_build_info` before their first one."""
    global _active
    if _active is None:
        active = Instrumentation(registry=registry or REGISTRY)
        if metrics:
            active.metrics = JobMetrics(active.registry)
            active.metrics.start()
        if tracing and _tracing_wanted(tracer_provider):
            from asyncmq.observability.tracing import start_tracing

            start_tracing(tracer_provider)
            active.tracing = True
        _active = active
    for backend in backends:
        if _active.metrics is not None:
            _active.metrics.backend_seen(backend.name)
    return _active


def instrumentation() -> Instrumentation | None:
    """The active instrumentation, if `instrument()` ran."""
    return _active


def uninstrument() -> None:
    global _active
    if _active is None:
        return
    if _active.metrics is not None:
        _active.metrics.stop()
        for metric in _active.metrics.all_metrics():
            _active.registry.unregister(metric)
    if _active.tracing:
        from asyncmq.observability.tracing import stop_tracing

        stop_tracing()
    _active = None


def _tracing_wanted(tracer_provider: Any) -> bool:
    """Tracing costs microseconds per job even when nothing records: skip it unless a real
    (SDK) provider was given or installed globally."""
    if tracer_provider is not None:
        return True
    try:
        from opentelemetry import trace
    except ImportError:
        return False
    provider = trace.get_tracer_provider()
    return type(provider).__name__ not in ("ProxyTracerProvider", "NoOpTracerProvider")


def serve_metrics(
    backend: BaseBackend,
    *,
    port: int = 9100,
    host: str = "127.0.0.1",
    job_metrics: bool = True,
    registry: CollectorRegistry | None = None,
) -> MetricsServer:
    """Serve `/metrics` and `/healthz` for this process: the job metrics (instrumenting the
    process if it is not yet) and the backend's queue state read at scrape time. Call it from
    the event loop the backend runs on. `job_metrics=False` serves the queue state alone: the
    standalone exporter, which watches queues with no worker running."""
    import asyncio

    if job_metrics:
        registry = instrument(registry=registry, backends=[backend]).registry
    elif registry is None:
        registry = CollectorRegistry()
        build_info(registry, [backend.name])
    collector = QueueStateCollector(backend, asyncio.get_running_loop())
    return MetricsServer(registry, host=host, port=port, collectors=[collector]).start()


def serve_multiprocess_metrics(
    backend: BaseBackend, directory: str, *, port: int = 9100, host: str = "127.0.0.1"
) -> MetricsServer:
    """Serve the sum of the metrics that worker processes write to `directory`
    (PROMETHEUS_MULTIPROC_DIR in their environment), and the backend's queue state.
    Exemplars are not available this way: prometheus_client's multiprocess files keep none."""
    import asyncio

    from prometheus_client import multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
    collector = QueueStateCollector(backend, asyncio.get_running_loop())
    return MetricsServer(registry, host=host, port=port, collectors=[collector]).start()
