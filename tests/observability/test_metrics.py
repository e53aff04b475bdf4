"""Job metrics fed by synthetic events, read straight from the registry: every contract
metric, its labels, and the caps that keep labels bounded."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from asyncmq.backends.memory import InMemoryBackend
from asyncmq.core.event import Event
from asyncmq.core.seam import event_emitter
from asyncmq.job import Job
from asyncmq.observability import metrics as metrics_module
from asyncmq.observability.metrics import JobMetrics
from asyncmq.queues import Queue
from tests.conformance.damage import damage
from tests.conformance.support import noop

T0 = 1_000.0


@pytest.fixture
def registry() -> Iterator[CollectorRegistry]:
    registry = CollectorRegistry()
    metrics = JobMetrics(registry, max_tasks=2, max_error_types=1)
    metrics.start()
    yield registry
    metrics.stop()


def job(job_id: str = "j1", task: str = "app.send", **fields: Any) -> Job:
    return Job(id=job_id, queue="emails", task=task, created_at=T0, **fields)


def payload() -> dict[str, Any]:
    return {"id": "p", "queue": "emails", "task": "app.send", "timestamps": {"created_at": T0}}


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_a_completed_job_counts_once_and_observes_wait_duration_and_latency(
    registry: CollectorRegistry,
) -> None:
    event_emitter.emit_job(Event.JOB_ENQUEUED, job(ready_at=T0))
    event_emitter.emit_job(Event.JOB_STARTED, job(attempt=1, ready_at=T0, started_at=T0 + 0.5))
    assert value(registry, "asyncmq_jobs_in_progress", queue="emails") == 1
    done = job(attempt=1, ready_at=T0, started_at=T0 + 0.5, finished_at=T0 + 2.5)
    event_emitter.emit_job(Event.JOB_COMPLETED, done)

    labels = {"queue": "emails", "task": "app.send"}
    assert value(registry, "asyncmq_jobs_enqueued_total", **labels) == 1
    assert value(registry, "asyncmq_jobs_started_total", **labels) == 1
    assert value(registry, "asyncmq_jobs_completed_total", **labels) == 1
    assert value(registry, "asyncmq_jobs_failed_total", **labels, error_type="x") is None
    assert value(registry, "asyncmq_jobs_retried_total", **labels) == 0
    assert value(registry, "asyncmq_jobs_in_progress", queue="emails") == 0
    assert value(registry, "asyncmq_job_wait_seconds_sum", queue="emails") == 0.5
    assert value(registry, "asyncmq_job_duration_seconds_sum", **labels) == 2.0
    assert value(registry, "asyncmq_job_duration_seconds_bucket", **labels, le="2.5") == 1
    assert value(registry, "asyncmq_job_duration_seconds_bucket", **labels, le="1.0") == 0
    assert value(registry, "asyncmq_job_latency_seconds_sum", queue="emails") == 2.5
    assert value(registry, "asyncmq_job_latency_seconds_bucket", queue="emails", le="3600.0") == 1


def test_a_retry_counts_a_retry_not_a_new_job_and_lateness_is_measured(registry: CollectorRegistry) -> None:
    event_emitter.emit_job(Event.JOB_DELAYED, job(delay_until=T0 + 10))
    started = job(attempt=1, delay_until=T0 + 10, ready_at=T0 + 10, started_at=T0 + 10.25)
    event_emitter.emit_job(Event.JOB_STARTED, started)
    failed_attempt = job(attempt=1, started_at=T0 + 10.25, finished_at=T0 + 11, delay_until=T0 + 20)
    event_emitter.emit_job(Event.JOB_RETRIED, failed_attempt)
    event_emitter.emit_job(Event.JOB_DELAYED, failed_attempt, reason="retry")

    labels = {"queue": "emails", "task": "app.send"}
    assert value(registry, "asyncmq_jobs_enqueued_total", **labels) == 1
    assert value(registry, "asyncmq_jobs_retried_total", **labels) == 1
    assert value(registry, "asyncmq_schedule_lateness_seconds_sum", queue="emails") == 0.25
    assert value(registry, "asyncmq_job_duration_seconds_count", **labels) == 1
    assert value(registry, "asyncmq_job_latency_seconds_count", queue="emails") == 0


def test_failures_count_by_error_type_capped_and_tasks_past_the_cap_become_other(
    registry: CollectorRegistry,
) -> None:
    for job_id, task, error in [("a", "t1", "KeyError"), ("b", "t2", "ValueError"), ("c", "t3", "KeyError")]:
        failed = job(job_id, task, attempt=1, started_at=T0, finished_at=T0 + 1)
        event_emitter.emit_job(Event.JOB_STARTED, failed)
        failed.error = {"type": error, "message": "m"}
        event_emitter.emit_job(Event.JOB_FAILED, failed)

    assert value(registry, "asyncmq_jobs_failed_total", queue="emails", task="t1", error_type="KeyError") == 1
    assert value(registry, "asyncmq_jobs_failed_total", queue="emails", task="t2", error_type="other") == 1
    assert (
        value(registry, "asyncmq_jobs_failed_total", queue="emails", task="other", error_type="KeyError") == 1
    )
    assert value(registry, "asyncmq_jobs_in_progress", queue="emails") == 0


def test_expired_cancelled_stalled_and_rate_limited_jobs_are_counted(registry: CollectorRegistry) -> None:
    event_emitter.emit_job(Event.JOB_EXPIRED, job("e"))
    event_emitter.emit_job(Event.JOB_CANCELLED, job("c"))
    event_emitter.emit_job(Event.JOB_STALLED, job("s"))
    event_emitter.emit(Event.QUEUE_RATE_LIMITED, {"queue": "emails", "held_back": 3, "wait_s": 0.2})
    labels = {"queue": "emails", "task": "app.send"}
    assert value(registry, "asyncmq_jobs_expired_total", **labels) == 1
    assert value(registry, "asyncmq_jobs_cancelled_total", **labels) == 1
    assert value(registry, "asyncmq_jobs_stalled_total", queue="emails") == 1
    assert value(registry, "asyncmq_rate_limited_total", queue="emails") == 3


def test_deduplicated_and_debounced_jobs_are_counted_from_0(registry: CollectorRegistry) -> None:
    labels = {"queue": "emails", "task": "app.send"}
    event_emitter.emit_jobs(Event.JOB_ENQUEUED, [job("first")])
    assert value(registry, "asyncmq_jobs_deduplicated_total", **labels) == 0
    assert value(registry, "asyncmq_jobs_debounced_total", **labels) == 0

    event_emitter.emit_job(Event.JOB_DEDUPLICATED, job("dropped"), deduplication_id="k", job_id="first")
    event_emitter.emit_job(Event.JOB_DEDUPLICATED, job("dropped-too"), deduplication_id="k", job_id="first")
    event_emitter.emit_job(Event.JOB_DEBOUNCED, job("latest"), deduplication_id="k", job_id="latest")

    assert value(registry, "asyncmq_jobs_deduplicated_total", **labels) == 2
    assert value(registry, "asyncmq_jobs_debounced_total", **labels) == 1
    assert value(registry, "asyncmq_jobs_enqueued_total", **labels) == 1


def test_a_job_failed_by_stall_recovery_here_does_not_touch_in_progress(registry: CollectorRegistry) -> None:
    event_emitter.emit_job(Event.JOB_FAILED, job("z", error={"type": "StalledJobError", "message": "m"}))
    assert value(registry, "asyncmq_jobs_in_progress", queue="emails") == 0


def test_worker_concurrency_follows_workers_starting_and_stopping(registry: CollectorRegistry) -> None:
    worker = {"worker_id": "w", "queue": "emails", "concurrency": 20}
    event_emitter.emit(Event.WORKER_STARTED, worker)
    event_emitter.emit(Event.WORKER_STARTED, {**worker, "worker_id": "w2"})
    assert value(registry, "asyncmq_worker_concurrency", queue="emails") == 40
    event_emitter.emit(Event.WORKER_STOPPED, worker)
    assert value(registry, "asyncmq_worker_concurrency", queue="emails") == 20


def test_listener_errors_are_counted_per_event(registry: CollectorRegistry) -> None:
    def broken(payload: dict[str, Any]) -> None:
        raise RuntimeError("bug")

    before = event_emitter.listener_errors["job:progress"]  # earlier errors are counted too
    assert value(registry, "asyncmq_event_listener_errors_total", event="job:progress") == before
    event_emitter.on(Event.JOB_PROGRESS, broken)
    event_emitter.emit(Event.JOB_PROGRESS, payload())
    event_emitter.emit(Event.JOB_PROGRESS, payload())
    assert value(registry, "asyncmq_event_listener_errors_total", event="job:progress") == before + 2


def test_a_fast_histogram_counts_a_value_on_a_bound_in_that_bucket_and_keeps_its_exemplar() -> None:
    from asyncmq.observability.fast import FastHistogram

    registry = CollectorRegistry()
    histogram = FastHistogram("h_seconds", "h", ["queue"], buckets=(0.5, 1.0), registry=registry)
    child = histogram.labels("q")
    child.observe(1.0, {"trace_id": "ab" * 16})
    child.observe(0.2)
    child.observe(7.0)
    assert value(registry, "h_seconds_bucket", queue="q", le="0.5") == 1
    assert value(registry, "h_seconds_bucket", queue="q", le="1.0") == 2
    assert value(registry, "h_seconds_bucket", queue="q", le="+Inf") == 3
    assert value(registry, "h_seconds_count", queue="q") == 3
    assert value(registry, "h_seconds_sum", queue="q") == 8.2
    (family,) = registry.collect()
    (exemplar,) = [sample.exemplar for sample in family.samples if sample.exemplar is not None]
    assert (exemplar.labels, exemplar.value) == ({"trace_id": "ab" * 16}, 1.0)


@pytest.mark.parametrize("size", [0, 1, 7, 8, 50, 300])
def test_a_fast_histogram_counts_a_batch_as_it_counts_its_values_one_by_one(size: int) -> None:
    import random

    from asyncmq.observability.fast import FastHistogram
    from asyncmq.observability.metrics import BUCKETS

    shuffled = random.Random(size)
    values = [shuffled.choice(BUCKETS) * shuffled.choice((0.5, 1.0, 1.5)) for _ in range(size)]
    values += [0.0, 7200.0][: size // 50]  # below the first bound, past the last one
    registry = CollectorRegistry()
    histogram = FastHistogram("h_seconds", "h", ["how"], buckets=BUCKETS, registry=registry)
    batch, single = histogram.labels("batch"), histogram.labels("single")
    batch.observe_many(values)
    for one in values:
        single.observe(one)
    (family,) = registry.collect()
    by_label: dict[str, dict[str, float]] = {"batch": {}, "single": {}}
    for sample in family.samples:
        by_label[sample.labels["how"]][sample.name + sample.labels.get("le", "")] = sample.value
    sums = [by_label[how].pop("h_seconds_sum") for how in ("batch", "single")]
    assert by_label["batch"] == by_label["single"]
    assert sums[0] == pytest.approx(sums[1])
    assert by_label["batch"]["h_seconds_count"] == len(values)


async def test_an_attempt_taken_from_its_worker_leaves_nothing_in_progress(
    registry: CollectorRegistry,
) -> None:
    import asyncio

    from asyncmq.backends.memory import InMemoryBackend
    from asyncmq.queues import Queue
    from tests.observability.app import sleeps

    queue = Queue("emails", backend=InMemoryBackend(), lease=0.3)
    job_id = await queue.add(sleeps.name, args=[30])
    started = asyncio.Event()
    event_emitter.on_job(Event.JOB_STARTED, lambda job: started.set())
    worker = queue.worker(handle_signals=False)
    running = asyncio.create_task(worker.run())
    await asyncio.wait_for(started.wait(), 5)
    assert value(registry, "asyncmq_jobs_in_progress", queue="emails") == 1
    abandoned = asyncio.Event()
    event_emitter.on_job(Event.JOB_ABANDONED, lambda job: abandoned.set())
    assert await queue.cancel(job_id)
    await asyncio.wait_for(abandoned.wait(), 5)  # at the worker's next heartbeat
    assert value(registry, "asyncmq_jobs_in_progress", queue="emails") == 0
    worker.stop()
    await asyncio.wait_for(running, 5)


SAMPLED = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "prometheus_client"])
def test_a_stored_batch_of_outcomes_counts_each_task_once_and_observes_every_job(
    fast: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not fast:  # the classes of multiprocess mode, without its files
        monkeypatch.setattr(metrics_module, "_metric_classes", lambda: (Counter, Gauge, Histogram))
    registry = CollectorRegistry()
    metrics = JobMetrics(registry)
    metrics.start()
    try:
        batch = [
            job("a", started_at=T0 + 1, finished_at=T0 + 2),
            job("b", task="app.other", started_at=T0 + 1, finished_at=T0 + 4),
            job("c", started_at=T0 + 1, finished_at=T0 + 3, meta={"traceparent": SAMPLED}),
            job("d", started_at=T0 + 1, finished_at=T0 + 5),  # its attempt began elsewhere
        ]
        for begun in batch[:3]:
            event_emitter.emit_job(Event.JOB_STARTED, begun)
        event_emitter.emit_jobs(Event.JOB_COMPLETED, batch)
    finally:
        metrics.stop()
    send, other = {"queue": "emails", "task": "app.send"}, {"queue": "emails", "task": "app.other"}
    assert value(registry, "asyncmq_jobs_completed_total", **send) == 3
    assert value(registry, "asyncmq_jobs_completed_total", **other) == 1
    assert value(registry, "asyncmq_jobs_in_progress", queue="emails") == 0
    assert value(registry, "asyncmq_job_duration_seconds_count", **send) == 2  # not "d"
    assert value(registry, "asyncmq_job_duration_seconds_sum", **send) == 1.0 + 2.0
    assert value(registry, "asyncmq_job_duration_seconds_bucket", **send, le="1.0") == 1
    assert value(registry, "asyncmq_job_duration_seconds_sum", **other) == 3.0
    assert value(registry, "asyncmq_job_latency_seconds_count", queue="emails") == 4
    assert value(registry, "asyncmq_job_latency_seconds_sum", queue="emails") == 2.0 + 4.0 + 3.0 + 5.0
    exemplars = [
        sample.exemplar.labels
        for family in registry.collect()
        if family.name in ("asyncmq_job_duration_seconds", "asyncmq_job_latency_seconds")
        for sample in family.samples
        if sample.exemplar is not None
    ]
    assert exemplars == [{"trace_id": "0af7651916cd43dd8448eb211c80319c"}] * 2


def test_a_fast_histogram_batch_with_a_nan_counts_the_other_values_where_they_belong() -> None:
    from asyncmq.observability.fast import FastHistogram

    registry = CollectorRegistry()
    histogram = FastHistogram("h_seconds", "h", ["queue"], buckets=(0.1, 1.0), registry=registry)
    histogram.labels("q").observe_many([0.5] * 4 + [float("nan")] + [0.5] * 3)
    assert (
        value(registry, "h_seconds_bucket", queue="q", le="1.0")
        - value(registry, "h_seconds_bucket", queue="q", le="0.1")
        == 7
    )


def test_queues_past_the_cap_become_other_and_the_folded_values_are_counted() -> None:
    registry = CollectorRegistry()
    metrics = JobMetrics(registry, max_queues=2)
    metrics.start()
    try:
        for queue in ("q1", "q2", "q3", "q4", "q3"):
            event_emitter.emit_job(Event.JOB_ENQUEUED, Job(id=queue, queue=queue, task="t", created_at=T0))
            event_emitter.emit_job(Event.JOB_STALLED, Job(id=queue, queue=queue, task="t", created_at=T0))
    finally:
        metrics.stop()
    assert value(registry, "asyncmq_jobs_enqueued_total", queue="q2", task="t") == 1
    assert value(registry, "asyncmq_jobs_enqueued_total", queue="other", task="t") == 3
    assert value(registry, "asyncmq_jobs_stalled_total", queue="other") == 3
    assert value(registry, "asyncmq_jobs_enqueued_total", queue="q3", task="t") is None
    folded = "asyncmq_metric_label_values_folded_total"
    assert value(registry, folded, label="queue") == 2  # q3 and q4, each once
    assert value(registry, folded, label="task") == 0
    assert value(registry, folded, label="error_type") == 0


async def test_the_queue_state_of_queues_past_the_cap_is_summed_under_other() -> None:
    import asyncio

    from asyncmq.backends.memory import InMemoryBackend
    from asyncmq.observability.collector import QueueStateCollector
    from asyncmq.queues import Queue

    backend = InMemoryBackend()
    for index, queue in enumerate(("a", "b", "c", "d")):
        for _ in range(index + 1):
            await Queue(queue, backend=backend).add("t")
    registry = CollectorRegistry()
    registry.register(QueueStateCollector(backend, asyncio.get_running_loop(), max_queues=2))
    await asyncio.to_thread(registry.collect)  # scraped from another thread, as by the server
    waiting = await asyncio.to_thread(
        lambda: {
            sample.labels["queue"]: sample.value
            for family in registry.collect()
            for sample in family.samples
            if sample.name == "asyncmq_queue_jobs" and sample.labels["state"] == "waiting"
        }
    )
    assert waiting == {"a": 1, "b": 2, "other": 7}
    folded = await asyncio.to_thread(
        registry.get_sample_value, "asyncmq_metric_label_values_folded_total", {"label": "queue"}
    )
    assert folded == 2


async def test_queue_totals_are_served_from_0_for_every_queue_and_task_with_the_caps_summing_the_rest() -> (
    None
):
    import asyncio

    from asyncmq.backends.memory import InMemoryBackend
    from asyncmq.observability.collector import QueueStateCollector
    from asyncmq.queues import Queue
    from asyncmq.transitions import TOTALS

    backend = InMemoryBackend()
    for queue, task in (("a", "t1"), ("a", "t2"), ("a", "t3"), ("b", "t1"), ("c", "t1"), ("c", "t1")):
        await Queue(queue, backend=backend).add(task)
    assert await Queue("a", backend=backend).cancel(
        (await Queue("a", backend=backend).list_jobs("waiting"))[0].id
    )
    registry = CollectorRegistry()
    collector = QueueStateCollector(backend, asyncio.get_running_loop(), max_queues=2, max_tasks=2)
    registry.register(collector)
    samples = await asyncio.to_thread(
        lambda: {
            (sample.name, sample.labels.get("queue"), sample.labels.get("task")): sample.value
            for family in registry.collect()
            for sample in family.samples
            if sample.name.startswith("asyncmq_queue_jobs_")
        }
    )
    enqueued = {key[1:]: n for key, n in samples.items() if key[0] == "asyncmq_queue_jobs_enqueued_total"}
    # tasks t1, t2 named; t3 folded into other; queue c folded into other
    assert enqueued == {("a", "t1"): 1, ("a", "t2"): 1, ("a", "other"): 1, ("b", "t1"): 1, ("other", "t1"): 2}
    for name in TOTALS:  # every total of every (queue, task), from 0
        assert {key[1:] for key in samples if key[0] == f"asyncmq_queue_jobs_{name}_total"} == set(enqueued)
    assert samples[("asyncmq_queue_jobs_cancelled_total", "a", "t1")] == 1
    assert samples[("asyncmq_queue_jobs_failed_total", "a", "t1")] == 0
    folded = await asyncio.to_thread(
        lambda: {
            label: registry.get_sample_value("asyncmq_metric_label_values_folded_total", {"label": label})
            for label in ("queue", "task")
        }
    )
    assert folded == {"queue": 1, "task": 1}


async def test_a_task_defined_in_the_process_has_its_queue_totals_at_0_before_its_first_job() -> None:
    import asyncio

    from asyncmq.backends.memory import InMemoryBackend
    from asyncmq.observability.collector import QueueStateCollector
    from asyncmq.queues import Queue
    from tests.observability.app import always_fails

    backend = InMemoryBackend()
    await Queue(always_fails.queue, backend=backend).add("observed.ok")
    registry = CollectorRegistry()
    registry.register(QueueStateCollector(backend, asyncio.get_running_loop()))
    failed = await asyncio.to_thread(
        registry.get_sample_value,
        "asyncmq_queue_jobs_failed_total",
        {"queue": always_fails.queue, "task": always_fails.name},
    )
    assert failed == 0


async def test_a_job_whose_stored_record_is_damaged_counts_as_failed_with_malformed_job_error() -> None:
    registry = CollectorRegistry()
    metrics = JobMetrics(registry)
    metrics.start()
    try:
        backend = InMemoryBackend()
        queue = Queue("emails", backend=backend)
        job_id = await queue.add(noop.name)
        assert await damage(backend, "emails", job_id, "kwargs")
        await queue.worker(burst=True, handle_signals=False).run()
    finally:
        metrics.stop()

    labels = {"queue": "emails", "task": noop.name, "error_type": "MalformedJobError"}
    assert value(registry, "asyncmq_jobs_failed_total", **labels) == 1
    assert value(registry, "asyncmq_jobs_in_progress", queue="emails") == 0
