"""Tracing end to end with the real OpenTelemetry SDK: the `send` span of an enqueue, the
`process` span of each attempt, the context stored in the job between them (in memory and
through Redis), the parent-or-link choice, sampling, and export over OTLP/HTTP to a real
receiver."""

from __future__ import annotations

import asyncio
import contextvars
import os
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import baggage, trace
from opentelemetry import context as otel_context
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased, Sampler, SamplingResult
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, SpanKind, StatusCode, TraceFlags
from opentelemetry.trace.span import TraceState

from asyncmq.backends.base import BaseBackend
from asyncmq.backends.memory import InMemoryBackend
from asyncmq.context import current_job
from asyncmq.core.seam import hooks
from asyncmq.job import Job
from asyncmq.observability.traceparent import sampled_trace_id
from asyncmq.observability.tracing import configure_from_env, start_tracing, stop_tracing
from asyncmq.queues import Queue
from asyncmq.tasks import task
from tests.cli.helpers import asyncmq_command
from tests.observability.otlp import OTLPReceiver, received_spans

ROOT = Path(__file__).resolve().parents[2]

SECRET = "s3cr3t-argument"
PIN = 424242
#: What the tasks saw of the trace while they ran: trace id, baggage.
SEEN: dict[str, Any] = {}


class FlakyError(Exception):
    """The first attempt of `flaky` raises this (with no argument in its message)."""


def _inner_span(name: str) -> None:
    """A span the task itself makes, from the test's provider, as user code would."""
    SEEN["trace_id"] = trace.get_current_span().get_span_context().trace_id
    SEEN["tenant"] = baggage.get_baggage("tenant")
    with SEEN["tracer"].start_as_current_span(name):
        pass


@task(name="tracing.flaky")
async def flaky(secret: str, pin: int) -> str:
    if current_job().job.attempt == 1:
        raise FlakyError("the first attempt fails")
    _inner_span("inner async")
    return "done"


@task(name="tracing.sync_work")
def sync_work(secret: str) -> str:
    _inner_span("inner sync")
    return "done"


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    """Spans recorded in memory from a provider of the test's own (never the global one);
    tracing, started by each test, is stopped afterwards."""
    exporter = InMemorySpanExporter()
    yield exporter
    stop_tracing()
    SEEN.clear()


class AskedSampler(Sampler):
    """A parent-based sampler that keeps the names of the spans it was asked about."""

    def __init__(self, root: Sampler) -> None:
        self.decides = ParentBased(root=root)
        self.asked: list[str] = []

    def should_sample(
        self,
        parent_context: otel_context.Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Any = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        self.asked.append(name)
        return self.decides.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )

    def get_description(self) -> str:
        return "AskedSampler{ParentBased}"


def provider_for(exporter: InMemorySpanExporter, sampler: Sampler | None = None) -> TracerProvider:
    provider = TracerProvider(sampler=sampler)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    SEEN["tracer"] = provider.get_tracer("tests")
    return provider


def spans_named(exporter: InMemorySpanExporter) -> dict[str, list[ReadableSpan]]:
    named: dict[str, list[ReadableSpan]] = {}
    for span in exporter.get_finished_spans():
        named.setdefault(span.name, []).append(span)
    return named


def parent_id(span: ReadableSpan) -> int | None:
    return None if span.parent is None else span.parent.span_id


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return int(span.context.span_id)


def trace_of(span: ReadableSpan) -> int:
    assert span.context is not None
    return int(span.context.trace_id)


def contract(operation: str, job_id: str, task_name: str, **more: Any) -> dict[str, Any]:
    return {
        "messaging.system": "asyncmq",
        "messaging.operation.type": operation,
        "messaging.operation.name": operation,
        "messaging.destination.name": "q",
        "messaging.message.id": job_id,
        "asyncmq.job.task": task_name,
        **more,
    }


async def run_all(queue: Queue, steps: int = 1) -> None:
    worker = queue.worker()
    for _ in range(steps):
        assert await worker.process()


async def test_a_job_retried_once_makes_one_trace_from_send_through_each_attempt_to_the_tasks_span(
    exporter: InMemorySpanExporter,
) -> None:
    start_tracing(provider_for(exporter))
    queue = Queue("q", backend=InMemoryBackend())
    job_id = await queue.add(flaky.name, [SECRET], {"pin": PIN}, retries=1)
    await run_all(queue, steps=2)
    assert (await queue.get_job(job_id)).status == "completed"

    named = spans_named(exporter)
    [send], [first, second] = named["send q"], named["process q"]
    [inner] = named["inner async"]
    assert len({trace_of(span) for span in exporter.get_finished_spans()}) == 1
    assert (send.kind, first.kind, second.kind) == (SpanKind.PRODUCER, SpanKind.CONSUMER, SpanKind.CONSUMER)
    assert parent_id(send) is None
    assert parent_id(first) == parent_id(second) == span_id(send)
    assert parent_id(inner) == span_id(second)

    assert dict(send.attributes or {}) == contract("send", job_id, flaky.name)
    assert dict(first.attributes or {}) == contract(
        "process", job_id, flaky.name, **{"asyncmq.job.attempt": 1, "error.type": "FlakyError"}
    )
    assert dict(second.attributes or {}) == contract(
        "process", job_id, flaky.name, **{"asyncmq.job.attempt": 2}
    )
    assert first.status.status_code is StatusCode.ERROR
    assert [event.name for event in first.events] == ["exception"]
    assert first.events[0].attributes is not None
    assert str(first.events[0].attributes["exception.type"]).endswith("FlakyError")
    assert second.status.status_code is StatusCode.UNSET  # success: left unset, as the spec asks
    assert send.status.status_code is StatusCode.UNSET


async def test_no_span_attribute_or_event_carries_the_jobs_arguments_or_result(
    exporter: InMemorySpanExporter,
) -> None:
    start_tracing(provider_for(exporter))
    queue = Queue("q", backend=InMemoryBackend())
    await queue.add(flaky.name, [SECRET], {"pin": PIN}, retries=1)
    await run_all(queue, steps=2)
    values: list[str] = []
    for span in exporter.get_finished_spans():
        values += [str(value) for value in (span.attributes or {}).values()]
        for event in span.events:
            values += [str(value) for value in (event.attributes or {}).values()]
    assert values
    assert not [value for value in values if SECRET in value or str(PIN) in value or value == "done"]


async def test_the_producers_trace_context_is_stored_in_the_jobs_meta(exporter: InMemorySpanExporter) -> None:
    start_tracing(provider_for(exporter))
    queue = Queue("q", backend=InMemoryBackend())
    job_id = await queue.add(flaky.name, [SECRET], {"pin": PIN})
    [send] = spans_named(exporter)["send q"]
    meta = (await queue.get_job(job_id)).meta
    assert send.context is not None
    flags = send.context.trace_flags  # sampled, and "random" (W3C level 2) on recent SDKs
    assert flags.sampled
    assert meta["traceparent"] == f"00-{trace_of(send):032x}-{span_id(send):016x}-{flags:02x}"
    assert sampled_trace_id(meta) == f"{trace_of(send):032x}"


async def test_in_link_mode_each_attempt_is_a_root_span_linked_to_the_send_span(
    exporter: InMemorySpanExporter,
) -> None:
    start_tracing(provider_for(exporter), link=True)
    queue = Queue("q", backend=InMemoryBackend())
    await queue.add(flaky.name, [SECRET], {"pin": PIN}, retries=1)
    await run_all(queue, steps=2)
    named = spans_named(exporter)
    [send], attempts, [inner] = named["send q"], named["process q"], named["inner async"]
    assert len(attempts) == 2
    for process in attempts:
        assert parent_id(process) is None
        assert trace_of(process) != trace_of(send)
        assert [(link.context.trace_id, link.context.span_id) for link in process.links] == [
            (trace_of(send), span_id(send))
        ]
    assert parent_id(inner) == span_id(attempts[1])
    assert len({trace_of(attempts[0]), trace_of(attempts[1]), trace_of(send)}) == 3


@pytest.mark.parametrize("link", [False, True], ids=["child", "link"])
async def test_baggage_set_by_the_producer_reaches_the_task(
    exporter: InMemorySpanExporter, link: bool
) -> None:
    start_tracing(provider_for(exporter), link=link)
    queue = Queue("q", backend=InMemoryBackend())
    token = otel_context.attach(baggage.set_baggage("tenant", "acme"))
    try:
        await queue.add(sync_work.name, [SECRET])
    finally:
        otel_context.detach(token)
    await asyncio.wait_for(queue.run(burst=True), 10)
    assert SEEN["tenant"] == "acme"


async def test_a_sync_tasks_span_made_in_the_worker_thread_nests_under_its_process_span(
    exporter: InMemorySpanExporter,
) -> None:
    start_tracing(provider_for(exporter))
    queue = Queue("q", backend=InMemoryBackend())
    job_id = await queue.add(sync_work.name, [SECRET])
    await asyncio.wait_for(queue.run(burst=True), 10)
    assert (await queue.get_job(job_id)).status == "completed"
    named = spans_named(exporter)
    [send], [process], [inner] = named["send q"], named["process q"], named["inner sync"]
    assert parent_id(inner) == span_id(process)
    assert parent_id(process) == span_id(send)
    assert dict(process.attributes or {}) == contract(
        "process", job_id, sync_work.name, **{"asyncmq.job.attempt": 1}
    )


async def test_a_job_whose_producer_was_not_sampled_runs_without_any_process_span_work(
    exporter: InMemorySpanExporter,
) -> None:
    sampler = AskedSampler(root=ALWAYS_OFF)
    start_tracing(provider_for(exporter, sampler))
    queue = Queue("q", backend=InMemoryBackend())
    job_id = await queue.add(flaky.name, [SECRET], {"pin": PIN}, retries=1)
    meta = (await queue.get_job(job_id)).meta
    assert not int(meta["traceparent"][-2:], 16) & TraceFlags.SAMPLED
    assert sampled_trace_id(meta) is None
    await run_all(queue, steps=2)
    assert (await queue.get_job(job_id)).status == "completed"
    assert exporter.get_finished_spans() == ()
    assert sampler.asked == ["send q", "inner async"]  # no process span was even started
    assert f"{SEEN['trace_id']:032x}" == meta["traceparent"][3:35]  # the trace id still flows


async def test_an_enqueue_inside_an_unsampled_span_passes_that_context_on_without_a_send_span(
    exporter: InMemorySpanExporter,
) -> None:
    start_tracing(provider_for(exporter))
    caller = SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(TraceFlags.DEFAULT))
    queue = Queue("q", backend=InMemoryBackend())
    with trace.use_span(NonRecordingSpan(caller)):
        job_id = await queue.add(flaky.name, [SECRET], {"pin": PIN}, retries=1)
    meta = (await queue.get_job(job_id)).meta
    assert meta["traceparent"] == f"00-{0xABC:032x}-{0xDEF:016x}-00"
    await run_all(queue, steps=2)
    assert exporter.get_finished_spans() == ()
    assert SEEN["trace_id"] == 0xABC


async def test_a_job_stored_without_trace_context_gets_a_root_process_span(
    exporter: InMemorySpanExporter,
) -> None:
    queue = Queue("q", backend=InMemoryBackend())
    job_id = await queue.add(sync_work.name, [SECRET])  # enqueued before tracing started
    start_tracing(provider_for(exporter))
    await asyncio.wait_for(queue.run(burst=True), 10)
    named = spans_named(exporter)
    [process], [inner] = named["process q"], named["inner sync"]
    assert "send q" not in named
    assert parent_id(process) is None
    assert parent_id(inner) == span_id(process)
    assert (await queue.get_job(job_id)).meta == {}


@pytest.mark.parametrize(
    "traceparent",
    [
        "00-" + "0" * 32 + "-" + "1" * 16 + "-01",  # an all-zero trace id
        "00-" + "a" * 32 + "-" + "1" * 16 + "-01-extra",  # extra fields in version 00
        "not a traceparent",
    ],
)
async def test_a_job_with_a_malformed_traceparent_runs_in_a_root_process_span(
    exporter: InMemorySpanExporter, traceparent: str
) -> None:
    queue = Queue("q", backend=InMemoryBackend())
    job = queue.build_job(sync_work.name, [SECRET])
    job.meta["traceparent"] = traceparent
    await queue.backend.enqueue([job])
    start_tracing(provider_for(exporter))
    await asyncio.wait_for(queue.run(burst=True), 10)
    [process] = spans_named(exporter)["process q"]
    assert parent_id(process) is None
    assert (await queue.get_job(job.id)).status == "completed"


async def test_a_failed_store_ends_the_send_span_with_an_error(exporter: InMemorySpanExporter) -> None:
    from redis.exceptions import ConnectionError as RedisConnectionError

    from asyncmq.backends.redis import RedisBackend

    start_tracing(provider_for(exporter))
    backend = RedisBackend("redis://127.0.0.1:1/0", retries=0)  # nothing listens on port 1
    try:
        with pytest.raises(RedisConnectionError):
            await Queue("q", backend=backend).add(flaky.name, [SECRET], {"pin": PIN})
    finally:
        await backend.close()
    [send] = spans_named(exporter)["send q"]
    assert send.status.status_code is StatusCode.ERROR
    assert (send.attributes or {})["error.type"] == "ConnectionError"


async def test_a_bulk_add_makes_one_send_span_for_the_batch_and_every_job_carries_it(
    exporter: InMemorySpanExporter,
) -> None:
    start_tracing(provider_for(exporter))
    queue = Queue("q", backend=InMemoryBackend())
    ids = await queue.add_bulk([{"task_id": sync_work.name, "args": [SECRET]} for _ in range(3)])
    [send] = spans_named(exporter)["send q"]
    assert dict(send.attributes or {}) == {
        "messaging.system": "asyncmq",
        "messaging.operation.type": "send",
        "messaging.operation.name": "send",
        "messaging.destination.name": "q",
        "messaging.batch.message_count": 3,
        "asyncmq.job.task": sync_work.name,
    }
    await asyncio.wait_for(queue.run(burst=True), 10)
    processes = spans_named(exporter)["process q"]
    assert sorted(str((span.attributes or {})["messaging.message.id"]) for span in processes) == sorted(ids)
    assert {parent_id(span) for span in processes} == {span_id(send)}


async def test_an_empty_bulk_add_makes_no_span(exporter: InMemorySpanExporter) -> None:
    start_tracing(provider_for(exporter))
    assert await Queue("q", backend=InMemoryBackend()).add_bulk([]) == []
    assert exporter.get_finished_spans() == ()


class FailingProcessor(SimpleSpanProcessor):
    """A span processor that breaks on every span it is handed at the end."""

    def on_end(self, span: ReadableSpan) -> None:
        raise RuntimeError("span processor bug")


async def test_a_failing_span_processor_never_fails_the_job(
    exporter: InMemorySpanExporter, caplog: pytest.LogCaptureFixture
) -> None:
    provider = TracerProvider()
    provider.add_span_processor(FailingProcessor(exporter))
    start_tracing(provider)
    queue = Queue("q", backend=InMemoryBackend())
    job_id = await queue.add(flaky.name, [SECRET, PIN], retries=0)
    await asyncio.wait_for(queue.run(burst=True), 10)
    assert (await queue.get_job(job_id)).status == "failed"  # the task's own outcome, nothing else
    assert "ending the span" in caplog.text


def test_a_context_that_cannot_be_restored_still_ends_the_process_span(
    exporter: InMemorySpanExporter, caplog: pytest.LogCaptureFixture
) -> None:
    start_tracing(provider_for(exporter))
    hook = hooks.active
    assert hook is not None
    job = Job(id="j", queue="q", task=sync_work.name)
    state = contextvars.copy_context().run(hook.before_attempt, job)
    contextvars.copy_context().run(hook.after_attempt, job, state, None)  # another context's token
    assert [span.name for span in exporter.get_finished_spans()] == ["process q"]
    assert "restoring the context after an attempt of job j failed" in caplog.text


def test_starting_twice_installs_the_hooks_once_and_stopping_removes_them() -> None:
    before = len(hooks)
    start_tracing(TracerProvider())
    start_tracing(TracerProvider(), link=True)
    assert len(hooks) == before + 1
    stop_tracing()
    stop_tracing()
    assert len(hooks) == before


# -- through Redis ---------------------------------------------------------------------------
@pytest.fixture
async def redis_backend() -> AsyncIterator[BaseBackend]:
    """A Redis backend under a key prefix of its own, every key of which is deleted afterwards."""
    from redis.exceptions import ConnectionError as RedisConnectionError

    from asyncmq.backends.redis import RedisBackend
    from tests.redis.support import missing

    backend = RedisBackend("redis://127.0.0.1:6379/0", prefix=f"tracing-{uuid.uuid4().hex[:12]}")
    try:
        await backend.connect()
        await backend.client.ping()
    except (RedisConnectionError, OSError) as exc:
        await backend.close()
        missing(f"no Redis at 127.0.0.1:6379: {exc}")
    try:
        yield backend
    finally:
        keys = [key async for key in backend.client.scan_iter(match=f"{backend.prefix}:*", count=1000)]
        if keys:
            await backend.client.delete(*keys)
        await backend.close()


async def test_the_trace_context_survives_the_redis_store_round_trip(
    exporter: InMemorySpanExporter, redis_backend: BaseBackend
) -> None:
    start_tracing(provider_for(exporter))
    queue = Queue("q", backend=redis_backend)
    job_id = await queue.add(flaky.name, [SECRET], {"pin": PIN}, retries=1)
    await run_all(queue, steps=2)
    assert (await queue.get_job(job_id)).status == "completed"
    named = spans_named(exporter)
    [send], attempts, [inner] = named["send q"], named["process q"], named["inner async"]
    assert [parent_id(span) for span in attempts] == [span_id(send)] * 2
    assert parent_id(inner) == span_id(attempts[1])
    assert {trace_of(span) for span in exporter.get_finished_spans()} == {trace_of(send)}


# -- over OTLP/HTTP ---------------------------------------------------------------------------
async def test_spans_reach_an_otlp_http_receiver_configured_from_the_environment(
    receiver: OTLPReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_TRACES_SAMPLER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OTEL_SERVICE_NAME", "tracing-test")
    provider = configure_from_env(otlp_endpoint=receiver.url)
    SEEN["tracer"] = provider.get_tracer("tests")
    start_tracing(provider)
    try:
        queue = Queue("q", backend=InMemoryBackend())
        await queue.add(sync_work.name, [SECRET])
        await asyncio.wait_for(queue.run(burst=True), 10)
    finally:
        stop_tracing()
        provider.shutdown()  # flushes the batch processor
    spans = {span.name: (service, scope, span) for service, scope, span in received_spans(receiver.requests)}
    assert set(spans) == {"send q", "process q", "inner sync"}
    assert receiver.paths
    assert set(receiver.paths) == {"/v1/traces"}
    assert {service for service, _, _ in spans.values()} == {"tracing-test"}
    assert spans["send q"][1] == spans["process q"][1] == "asyncmq"
    send, process = spans["send q"][2], spans["process q"][2]
    assert send.trace_id == process.trace_id == spans["inner sync"][2].trace_id
    assert process.parent_span_id == send.span_id


def test_configure_from_env_honours_the_sampler_variables_and_adds_no_exporter_without_an_endpoint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_SERVICE_NAME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0.25")
    provider = configure_from_env()
    try:
        assert "TraceIdRatioBased{0.25}" in provider.sampler.get_description()
        assert provider.resource.attributes["service.name"] == "asyncmq"
        assert provider._active_span_processor._span_processors == ()
    finally:
        provider.shutdown()


async def test_a_worker_started_with_otlp_endpoint_exports_its_attempts_into_the_producers_trace(
    exporter: InMemorySpanExporter,
    receiver: OTLPReceiver,
    backend: BaseBackend,
    queue_name: str,
    cleanup: None,
) -> None:
    start_tracing(provider_for(exporter))
    await Queue(queue_name, backend=backend).add("observed.fails_once", retries=1)
    stop_tracing()
    [send] = spans_named(exporter)[f"send {queue_name}"]
    otel = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_TRACES_SAMPLER")
    env = {name: value for name, value in os.environ.items() if name not in otel}
    env |= {"PYTHONPATH": str(ROOT), "OTEL_SERVICE_NAME": "worker-under-test"}
    url = os.environ.get("ASYNCMQ_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    worker = await asyncio.create_subprocess_exec(
        *asyncmq_command(), "worker", "start", queue_name, "--burst", "--backend", url,
        "--app", "tests.observability.app", "--otlp-endpoint", receiver.url,
        cwd=ROOT, env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await asyncio.wait_for(worker.communicate(), 30)
    assert worker.returncode == 0, output.decode()
    received = received_spans(receiver.requests)  # sent before the worker exited
    attempts = [span for _, _, span in received if span.name == f"process {queue_name}"]
    assert len(attempts) == 2
    assert {service for service, _, _ in received} == {"worker-under-test"}
    assert {span.trace_id for span in attempts} == {trace_of(send).to_bytes(16, "big")}
    assert {span.parent_span_id for span in attempts} == {span_id(send).to_bytes(8, "big")}
