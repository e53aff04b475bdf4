"""asyncmq's observability plugin: Prometheus metrics and OpenTelemetry traces.

It subscribes to the engine's seams (`asyncmq.core.event.event_emitter`, `asyncmq.core.hooks`
and backend operation hooks); the engine never imports it. Needs the extra:
`pip install 'asyncmq[observability]'`.

    from asyncmq.observability import instrument
    instrument()   # in any process: workers, and producers such as an API server

`instrument()` is idempotent; `uninstrument()` removes every listener and hook.
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from asyncmq.conf import Settings, settings
from asyncmq.errors import ConfigurationError
from asyncmq.logging import get_logger

try:
    from prometheus_client import REGISTRY, CollectorRegistry
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ConfigurationError("observability needs its extra: pip install 'asyncmq[observability]'") from exc

from asyncmq.observability.collector import QueueStateCollector
from asyncmq.observability.metrics import JobMetrics, LabelCap, build_info
from asyncmq.observability.server import MetricsServer

if TYPE_CHECKING:
    from asyncmq.backends.base import BaseBackend

__all__ = [
    "Instrumentation",
    "instrument",
    "instrument_from_settings",
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


log = get_logger(__name__)

_active: Instrumentation | None = None


def instrument(
    metrics: bool = True,
    tracing: bool = True,
    registry: CollectorRegistry | None = None,
    tracer_provider: Any = None,
    backends: tuple[BaseBackend, ...] | list[BaseBackend] = (),
    link: bool | None = None,
) -> Instrumentation:
    """Turn on metrics (into `registry`, default the global one) and tracing (with
    `tracer_provider`, default the global one if an SDK provider is set there; `link`, default
    the `tracing_link` setting, makes attempts link to the producer's span rather than continue
    its trace). Calling it again returns the same instrumentation, with whatever it asks for
    that was off turned on (the tracing setting alone, then `--metrics-port`, gives both); it
    never turns anything off. Every backend's round trips are counted; those in `backends` are
    named in `asyncmq_build_info` before their first one."""
    global _active
    if link is None:  # read first: loading settings may instrument the process itself
        link = settings.tracing_link
    if _active is None:
        _active = Instrumentation(registry=registry or REGISTRY)
    if metrics and _active.metrics is None:
        _active.metrics = JobMetrics(
            _active.registry, max_queues=settings.metrics_max_queues, max_tasks=settings.metrics_max_tasks
        )
        _active.metrics.start()
    if tracing and not _active.tracing and _tracing_wanted(tracer_provider):
        from asyncmq.observability.tracing import start_tracing

        start_tracing(tracer_provider, link=link)
        _active.tracing = True
    for backend in backends:
        if _active.metrics is not None:
            _active.metrics.backend_seen(backend.name)
    return _active


def instrument_from_settings(loaded: Settings) -> Instrumentation:
    """What the `metrics`, `tracing` and `tracing_link` settings ask for; `asyncmq.conf` calls
    it when it loads settings that turn either on. Tracing uses the global SDK tracer provider;
    with none set but `OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT` set, one is configured from the
    `OTEL_*` variables, made global (so the tasks' own spans go to the same collector) and shut
    down at exit, sending its last spans. With neither, spans would go nowhere: tracing stays
    off, and a warning says why."""
    provider = None
    if loaded.tracing and not _sdk_provider_installed():
        from asyncmq.observability.tracing import ENDPOINT_VARIABLES, configure_from_env

        if any(os.environ.get(name) for name in ENDPOINT_VARIABLES):
            from opentelemetry import trace

            provider = configure_from_env()
            trace.set_tracer_provider(provider)
            atexit.register(provider.shutdown)
        else:
            log.warning(
                "the tracing setting is on, but no OpenTelemetry SDK tracer provider is set and "
                "OTEL_EXPORTER_OTLP_ENDPOINT is not: jobs are not traced"
            )
    return instrument(
        metrics=loaded.metrics, tracing=loaded.tracing, tracer_provider=provider, link=loaded.tracing_link
    )


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
    return tracer_provider is not None or _sdk_provider_installed()


def _sdk_provider_installed() -> bool:
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
    labels = None
    if job_metrics:
        active = instrument(registry=registry, backends=[backend])
        registry = active.registry
        if active.metrics is not None:
            labels = (active.metrics.queue_label, active.metrics.task_label)
    elif registry is None:
        registry = CollectorRegistry()
        build_info(registry, [backend.name])
    collector = _queue_state(backend, labels=labels)
    return MetricsServer(registry, host=host, port=port, collectors=[collector]).start()


def serve_multiprocess_metrics(
    backend: BaseBackend, directory: str, *, port: int = 9100, host: str = "127.0.0.1"
) -> MetricsServer:
    """Serve the sum of the metrics that worker processes write to `directory`
    (PROMETHEUS_MULTIPROC_DIR in their environment), and the backend's queue state.
    Exemplars are not available this way: prometheus_client's multiprocess files keep none."""
    from prometheus_client import multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
    # The children count what their caps fold; these caps' folds would be a second family.
    collector = _queue_state(backend, reports_folds=False)
    return MetricsServer(registry, host=host, port=port, collectors=[collector]).start()


def _queue_state(
    backend: BaseBackend,
    *,
    labels: tuple[LabelCap, LabelCap] | None = None,
    reports_folds: bool | None = None,
) -> QueueStateCollector:
    """The queue-state collector of a metrics server, on the running loop, with the settings' caps."""
    import asyncio

    return QueueStateCollector(
        backend,
        asyncio.get_running_loop(),
        max_queues=settings.metrics_max_queues,
        max_tasks=settings.metrics_max_tasks,
        labels=labels,
        reports_folds=reports_folds,
    )
