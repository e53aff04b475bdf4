"""OpenTelemetry traces for asyncmq: a `send {queue}` span per enqueue, a `process {queue}`
span per attempt, joined through the W3C trace context stored in the job's `meta`.

It plugs into `asyncmq.core.hooks` (the engine never imports it) and follows the messaging
semantic conventions (docs/observability.md, section 3):

- Producer: one PRODUCER span `send {queue}` per store call, ended once the backend has
  stored the jobs (ERROR if storing failed). Its context is injected with the configured
  propagator (W3C `traceparent`, `tracestate`, `baggage` by default) into each job's `meta`,
  so it is stored with the job and survives any backend. A bulk add is one store call and so
  one span for the batch (`messaging.batch.message_count`), as the conventions advise: a
  recorded span costs 30-47 µs, several times the ~10 µs a job takes to store in bulk.
- Consumer: one CONSUMER span `process {queue}` per attempt, current while the task runs,
  so spans the task makes (in the event loop, or in the worker's thread for sync tasks,
  which run in a copy of the context) nest under it. By default it is a child of the
  producer's span: the job's whole life is one trace. With `link=True` each attempt starts
  a trace of its own with a link to the producer's span, which keeps a large fan-out (one
  bulk add of thousands of jobs) from making one huge trace.
- Sampling and cost: the producer's sampling decision travels in the trace flags. An
  attempt whose producer was not sampled does no span work at all (child mode): the
  extracted context is made current, so the trace id and baggage still reach the task and
  the services it calls, and spans it makes are dropped by the usual parent-based sampler.
  Likewise an enqueue inside an unsampled span passes that span's context on without
  making a span. In link mode each attempt's trace is sampled on its own, by the sampler.
  A job stored with no trace context (by a process without tracing) starts a root span,
  subject to the sampler. Jobs' arguments and results are never recorded.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import (
    INVALID_SPAN,
    Link,
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
)

from asyncmq.core.hooks import JobHook
from asyncmq.core.seam import hooks
from asyncmq.logging import get_logger
from asyncmq.observability.traceparent import parse_traceparent
from asyncmq.version import __version__

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import TracerProvider as SDKTracerProvider
    from opentelemetry.trace import Tracer, TracerProvider
    from opentelemetry.util.types import AttributeValue

    from asyncmq.job import Job

__all__ = ["ENDPOINT_VARIABLES", "configure_from_env", "exporting_traces", "start_tracing", "stop_tracing"]

log = get_logger(__name__)

_SYSTEM = "asyncmq"
_TRACES_PATH = "/v1/traces"
#: Either one set means spans should be exported over OTLP.
ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


class _Sampled:
    """A sampled attempt's state: its `process` span, and the token that restores the context
    the span replaced as the current one."""

    __slots__ = ("span", "token")

    def __init__(self, span: Span, token: object) -> None:
        self.span = span
        self.token = token


def _attributes(operation: str, queue: str) -> dict[str, AttributeValue]:
    return {
        "messaging.system": _SYSTEM,
        "messaging.operation.type": operation,
        "messaging.operation.name": operation,
        "messaging.destination.name": queue,
    }


def _end_safely(span: Span, exc: BaseException | None) -> None:
    """End `span`, marking it failed by `exc`. A success leaves the status unset, as the
    specification asks of instrumentation libraries (OK is for the application to set). A
    failure here (a span processor's) is logged: the job's outcome stands."""
    try:
        if exc is not None:
            name = type(exc).__name__
            span.set_attribute("error.type", name)
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, name))
        span.end()
    except Exception:
        log.exception("ending the span %r failed", span)


class _Tracing(JobHook):
    """The hook, bound to one tracer and one parent-or-link choice. Every method catches its
    own errors: tracing never fails an enqueue or a job."""

    guards_itself = True

    def __init__(self, tracer: Tracer, link: bool) -> None:
        self.tracer = tracer
        self.link = link

    def before_enqueue(self, jobs: Sequence[Job]) -> Span | None:
        """Start the `send` span (unless the caller's trace is not sampled) and inject its
        context into each job's `meta`."""
        if not jobs:
            return None  # an empty bulk add: nothing is sent
        try:
            caller = trace.get_current_span().get_span_context()
            span = None
            if caller.is_valid and not caller.trace_flags.sampled:
                carried = None  # an unsampled caller: pass its context on, make no span
            else:
                span = self._send_span(jobs)
                carried = trace.set_span_in_context(span)
            for job in jobs:
                propagate.inject(job.meta, context=carried)
            return span
        except Exception:
            log.exception("tracing an enqueue to %s failed; the jobs are stored untraced", jobs[0].queue)
            return None

    def after_enqueue(self, jobs: Sequence[Job], state: Span | None, error: BaseException | None) -> None:
        if state is not None:
            _end_safely(state, error)

    def _send_span(self, jobs: Sequence[Job]) -> Span:
        queue = jobs[0].queue
        attributes = _attributes("send", queue)
        if len(jobs) == 1:
            attributes["messaging.message.id"] = jobs[0].id
        else:
            attributes["messaging.batch.message_count"] = len(jobs)
        tasks = {job.task for job in jobs}
        if len(tasks) == 1:
            attributes["asyncmq.job.task"] = jobs[0].task
        return self.tracer.start_span(f"send {queue}", kind=SpanKind.PRODUCER, attributes=attributes)

    def before_attempt(self, job: Job) -> object:
        """Make the attempt's context current: its producer's when that was not sampled (no
        span work; a token comes back), else a new `process` span's (a `_Sampled`)."""
        try:
            meta = job.meta
            value = meta.get("traceparent")
            # The traceparent alone (the usual case) is parsed once for a bulk add's jobs.
            known = _producer_context(value) if value.__class__ is str and len(meta) == 1 else None
            if known is None:  # tracestate, baggage, another propagator's keys: the general way
                return self._process_span(job, propagate.extract(meta))
            carried, sampled = known
            if not sampled and not self.link:
                return _make_current(carried)  # no span work; the trace id still flows to the task
            return self._process_span(job, carried)
        except Exception:
            log.exception("tracing an attempt of job %s failed; it runs untraced", job.id)
            return None

    def after_attempt(self, job: Job, state: object, error: BaseException | None) -> None:
        if state is None:
            return
        try:
            _restore(state.token if isinstance(state, _Sampled) else state)
        except Exception:  # a token from another context: only a caller other than the worker
            log.exception("restoring the context after an attempt of job %s failed", job.id)
        if isinstance(state, _Sampled):
            _end_safely(state.span, error)

    def _process_span(self, job: Job, carried: Context) -> object:
        producer = trace.get_current_span(carried).get_span_context()
        if producer.is_valid and not producer.trace_flags.sampled and not self.link:
            return _make_current(carried)  # not sampled (found by a general extract)
        links = None
        parent = carried
        if self.link and producer.is_valid:
            links = [Link(producer)]
            parent = trace.set_span_in_context(INVALID_SPAN, carried)  # a root that keeps baggage
        attributes = _attributes("process", job.queue)
        attributes["messaging.message.id"] = job.id
        attributes["asyncmq.job.task"] = job.task
        attributes["asyncmq.job.attempt"] = job.attempt
        span = self.tracer.start_span(
            f"process {job.queue}", parent, kind=SpanKind.CONSUMER, attributes=attributes, links=links
        )
        return _Sampled(span, _make_current(trace.set_span_in_context(span, carried)))


def _context_switch() -> tuple[Callable[[Context], object], Callable[[Any], object]]:
    """How to make a context current, and restore the one before. With OpenTelemetry's
    default runtime context, a `ContextVar`, the variable is set and reset directly: its
    `attach` and `detach` reach it through two calls each, a good part of what an unsampled
    attempt costs. Any other runtime context goes through them."""
    variable = getattr(otel_context._RUNTIME_CONTEXT, "_current_context", None)
    if isinstance(variable, ContextVar):
        return variable.set, variable.reset
    return otel_context.attach, otel_context.detach


_make_current, _restore = _context_switch()


@functools.lru_cache(maxsize=1024)
def _producer_context(value: str) -> tuple[Context, bool] | None:
    """The context a valid traceparent carries and whether it is sampled, read without the
    propagators' general parsing; None if malformed. Cached: the jobs of one bulk add share
    their producer's traceparent."""
    parent = parse_traceparent(value)
    if parent is None:
        return None
    flags = TraceFlags(TraceFlags.SAMPLED if parent.sampled else TraceFlags.DEFAULT)
    remote = SpanContext(int(parent.trace_id, 16), int(parent.span_id, 16), is_remote=True, trace_flags=flags)
    return trace.set_span_in_context(NonRecordingSpan(remote)), parent.sampled


_installed: _Tracing | None = None


def start_tracing(tracer_provider: TracerProvider | None = None, *, link: bool = False) -> None:
    """Trace every enqueue and attempt of this process, with spans from `tracer_provider`
    (default: the global one, looked up at each span, so one installed later is used).

    `link=True` makes each attempt a root span linked to its producer's span, instead of
    its child. Idempotent: a second call replaces the first one's settings, never doubling
    the spans.
    """
    global _installed
    stop_tracing()
    tracer = trace.get_tracer(_SYSTEM, __version__, tracer_provider=tracer_provider)
    _installed = _Tracing(tracer, link)
    hooks.add(_installed)


def stop_tracing() -> None:
    """Stop tracing: remove the hooks. Attempts already running end their spans as usual.
    Idempotent."""
    global _installed
    if _installed is None:
        return
    hooks.remove(_installed)
    _installed = None


def configure_from_env(otlp_endpoint: str | None = None) -> SDKTracerProvider:
    """An SDK `TracerProvider` configured the standard way, from `OTEL_*` variables: the
    sampler (`OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG`), the resource
    (`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`; the service is `asyncmq` if unnamed),
    and, when `otlp_endpoint` is given or `OTEL_EXPORTER_OTLP_ENDPOINT` or
    `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set, an OTLP/HTTP exporter behind a batch
    processor (headers, timeout, compression, TLS and batching from their variables too).

    `otlp_endpoint` is the collector's base URL, as in `OTEL_EXPORTER_OTLP_ENDPOINT`
    (`http://collector:4318`, to which `/v1/traces` is added); it wins over the variables.
    The provider is not made global: pass it to `start_tracing`, and call its `shutdown()`
    at exit so the last spans are sent.
    """
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider

    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: _SYSTEM}))
    provider = TracerProvider(resource=resource)
    if otlp_endpoint or any(os.environ.get(name) for name in ENDPOINT_VARIABLES):
        _add_otlp_exporter(provider, otlp_endpoint)
    return provider


def _add_otlp_exporter(provider: SDKTracerProvider, base_url: str | None) -> None:
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError as exc:
        raise ImportError(
            f"exporting traces needs the observability extra: pip install 'asyncmq[observability]' ({exc})"
        ) from exc
    endpoint = None
    if base_url:
        base = base_url.rstrip("/")
        endpoint = base if base.endswith(_TRACES_PATH) else base + _TRACES_PATH
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))


@contextmanager
def exporting_traces(otlp_endpoint: str | None = None, *, link: bool = False) -> Iterator[SDKTracerProvider]:
    """Trace this process while inside, exporting as `configure_from_env` sets up: what a
    worker's `--otlp-endpoint` needs. The provider also becomes the global one (unless one is
    set already), so spans the tasks make go to the same collector. On exit tracing stops and
    the provider shuts down, sending the spans still buffered."""
    provider = configure_from_env(otlp_endpoint)
    if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):  # none set yet
        trace.set_tracer_provider(provider)
    start_tracing(provider, link=link)
    try:
        yield provider
    finally:
        stop_tracing()
        provider.shutdown()
