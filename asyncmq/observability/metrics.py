"""Prometheus metrics of the observability contract, fed by lifecycle events, backend
operation hooks and, at scrape time, the backend's queue state.

Cheap by construction: label children are bound once per (queue, task) and cached; an
event costs a dict lookup and an increment or observation. Labels stay bounded: queues, task
names and error types past a cap become `other`; no job id, host or pid is ever a label. Every
counter of a queue is created at 0 when the queue is first seen, so ratios (failure rate,
retry rate) exist before the first failure.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from asyncmq.core.event import Event, Payload
from asyncmq.core.seam import event_emitter, seam
from asyncmq.observability.fast import FastCounter, FastGauge, FastHistogram
from asyncmq.observability.traceparent import sampled_trace_id
from asyncmq.registry import TASK_REGISTRY
from asyncmq.version import __version__

if TYPE_CHECKING:
    from prometheus_client.metrics import MetricWrapperBase

    from asyncmq.job import Job

__all__ = ["BUCKETS", "OTHER", "JobMetrics", "LabelCap", "build_info"]

#: Jobs are not RPCs: from a millisecond to an hour.
BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
)  # fmt: skip
OTHER = "other"


class LabelCap:
    """Maps a label value to itself until `limit` distinct values were seen, then to `other`.
    `on_fold` hears of each distinct value folded, once: how many queues or tasks a dashboard's
    `other` stands for."""

    def __init__(self, label: str, limit: int, on_fold: Callable[[str], None] | None = None) -> None:
        self.label = label
        self.limit = limit
        self.on_fold = on_fold
        self._seen: set[str] = set()
        self._folded: set[str] = set()

    def __call__(self, value: str) -> str:
        if value in self._seen:
            return value
        if len(self._seen) < self.limit:
            self._seen.add(value)
            return value
        if value not in self._folded:
            self._folded.add(value)
            if self.on_fold is not None:
                self.on_fold(self.label)
        return OTHER

    @property
    def folded(self) -> int:
        return len(self._folded)


class _Children:
    """Every child a job event touches, for one (queue, task): one dict lookup per event."""

    __slots__ = (
        "cancelled", "completed", "debounced", "deduplicated", "duration", "enqueued", "expired",
        "in_progress", "latency", "lateness", "retried", "started", "wait",
    )  # fmt: skip
    cancelled: Any
    completed: Any
    debounced: Any
    deduplicated: Any
    duration: Any
    enqueued: Any
    expired: Any
    in_progress: Any
    latency: Any
    lateness: Any
    retried: Any
    started: Any
    wait: Any

    def __init__(self, metrics: JobMetrics, queue: str, task: str) -> None:
        queue, task = metrics.queue_label(queue), metrics.task_label(task)
        for name in (
            "enqueued", "started", "completed", "retried", "expired", "cancelled", "duration", "deduplicated",
            "debounced",
        ):  # fmt: skip
            setattr(self, name, metrics._child(getattr(metrics, name), queue, task))
        for name in ("in_progress", "wait", "latency", "lateness"):
            setattr(self, name, metrics._child(getattr(metrics, name), queue))


def _metric_classes() -> tuple[Any, Any, Any]:
    """prometheus_client's classes where values must live in files (worker processes under
    `--processes`, PROMETHEUS_MULTIPROC_DIR set); the fast ones everywhere else."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return Counter, Gauge, Histogram
    return FastCounter, FastGauge, FastHistogram


class JobMetrics:
    """The event-fed metrics of one registry. `start()` subscribes, `stop()` unsubscribes."""

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        max_queues: int = 100,
        max_tasks: int = 200,
        max_error_types: int = 50,
    ) -> None:
        self.registry = registry
        qt, q = ["queue", "task"], ["queue"]
        Counter, Gauge, Histogram = _metric_classes()
        self.folded = Counter(
            "asyncmq_metric_label_values_folded",
            "Distinct label values shown as `other` because their label reached its cap.",
            ["label"],
            registry=registry,
        )
        self.queue_label = LabelCap("queue", max_queues, self._on_fold)
        self.task_label = LabelCap("task", max_tasks, self._on_fold)
        self._error_label = LabelCap("error_type", max_error_types, self._on_fold)
        for cap in (self.queue_label, self.task_label, self._error_label):
            self.folded.labels(cap.label)  # at 0
        self.enqueued = Counter(
            "asyncmq_jobs_enqueued", "Jobs stored, now or delayed.", qt, registry=registry
        )
        self.started = Counter("asyncmq_jobs_started", "Attempts begun.", qt, registry=registry)
        self.completed = Counter("asyncmq_jobs_completed", "Attempts that succeeded.", qt, registry=registry)
        self.retried = Counter(
            "asyncmq_jobs_retried", "Attempts that failed with another scheduled.", qt, registry=registry
        )
        self.failed = Counter(
            "asyncmq_jobs_failed", "Jobs dead-lettered.", [*qt, "error_type"], registry=registry
        )
        self.expired = Counter(
            "asyncmq_jobs_expired", "Jobs whose TTL passed before start.", qt, registry=registry
        )
        self.cancelled = Counter("asyncmq_jobs_cancelled", "Jobs cancelled.", qt, registry=registry)
        self.deduplicated = Counter(
            "asyncmq_jobs_deduplicated",
            "Jobs not stored: another job held their deduplication id.",
            qt,
            registry=registry,
        )
        self.debounced = Counter(
            "asyncmq_jobs_debounced",
            "Jobs stored in the place of the delayed job that held their deduplication id.",
            qt,
            registry=registry,
        )
        self.stalled = Counter(
            "asyncmq_jobs_stalled", "Jobs recovered from a dead worker.", q, registry=registry
        )
        self.rate_limited = Counter(
            "asyncmq_rate_limited", "Starts held back by the rate limit.", q, registry=registry
        )
        self.wait = Histogram(
            "asyncmq_job_wait_seconds", "Ready to started.", q, buckets=BUCKETS, registry=registry
        )
        self.duration = Histogram(
            "asyncmq_job_duration_seconds",
            "Attempt started to finished.",
            qt,
            buckets=BUCKETS,
            registry=registry,
        )
        self.latency = Histogram(
            "asyncmq_job_latency_seconds", "Created to finished.", q, buckets=BUCKETS, registry=registry
        )
        self.lateness = Histogram(
            "asyncmq_schedule_lateness_seconds",
            "Due (delay_until) to started, for delayed and repeatable jobs.",
            q,
            buckets=BUCKETS,
            registry=registry,
        )
        # Summed over live processes when workers run as several (multiprocess mode).
        self.in_progress = Gauge(
            "asyncmq_jobs_in_progress",
            "Attempts running in this process.",
            q,
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.concurrency = Gauge(
            "asyncmq_worker_concurrency",
            "Slots this process offers.",
            q,
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.backend_operations = Counter(
            "asyncmq_backend_operations",
            "Calls (round trips) to the backend.",
            ["backend", "operation"],
            registry=registry,
        )
        self.backend_seconds = Histogram(
            "asyncmq_backend_operation_seconds",
            "Latency of backend calls.",
            ["backend", "operation"],
            buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0),
            registry=registry,
        )
        self.build_info = build_info(registry, [], Gauge)
        self.listener_errors = Counter(
            "asyncmq_event_listener_errors", "Event listeners that raised.", ["event"], registry=registry
        )
        for event in Event:  # every event at 0, and what raised before metrics were on
            self.listener_errors.labels(event.value).inc(event_emitter.listener_errors.get(event.value, 0))
        self._children: dict[tuple[Any, ...], Any] = {}
        self._by_task: dict[tuple[str, str], _Children] = {}
        self._running: dict[str, str] = {}  # job id -> queue, for attempts begun here
        self._known_queues: set[str] = set()
        # Job events arrive as the job itself (`event_emitter.on_job`): no payload is built
        # for metrics, which run on every job. Outcomes and enqueues arrive as the batch that
        # was stored in one round trip (`on_jobs`): counted once per batch.
        self._batch_handlers: dict[Event, Callable[[Sequence[Job]], None]] = {
            Event.JOB_ENQUEUED: self._on_stored,
            Event.JOB_DELAYED: self._on_stored,
            Event.JOB_BLOCKED: self._on_stored,
            Event.JOB_COMPLETED: self._on_completed,
            Event.JOB_RETRIED: self._on_retried,
            Event.JOB_FAILED: self._on_failed,
        }
        self._job_handlers: dict[Event, Callable[[Job], None]] = {
            Event.JOB_STARTED: self._on_started,
            Event.JOB_EXPIRED: self._on_expired,
            Event.JOB_CANCELLED: self._on_cancelled,
            Event.JOB_STALLED: self._on_stalled,
            Event.JOB_ABANDONED: self._on_abandoned,
            Event.JOB_DEDUPLICATED: self._on_deduplicated,
            Event.JOB_DEBOUNCED: self._on_debounced,
        }
        self._handlers: dict[Event, Callable[[Payload], None]] = {
            Event.QUEUE_RATE_LIMITED: self._on_rate_limited,
            Event.WORKER_STARTED: self._on_worker_started,
            Event.WORKER_STOPPED: self._on_worker_stopped,
        }
        self._backend_names: set[str] = set()

    def all_metrics(self) -> list[Any]:
        """Every metric this object registered, for `uninstrument()` to unregister."""
        kinds = (Counter, Gauge, Histogram, FastCounter, FastGauge, FastHistogram)
        return [value for value in vars(self).values() if isinstance(value, kinds)]

    # -- wiring -----------------------------------------------------------------------
    def start(self) -> None:
        for event, batch_handler in self._batch_handlers.items():
            event_emitter.on_jobs(event, batch_handler)
        for event, job_handler in self._job_handlers.items():
            event_emitter.on_job(event, job_handler)
        for event, handler in self._handlers.items():
            event_emitter.on(event, handler)
        seam.on_listener_error(self._on_listener_error)
        seam.on_operation(self._on_operation)

    def stop(self) -> None:
        for event, batch_handler in self._batch_handlers.items():
            event_emitter.off_jobs(event, batch_handler)
        for event, job_handler in self._job_handlers.items():
            event_emitter.off_job(event, job_handler)
        for event, handler in self._handlers.items():
            event_emitter.off(event, handler)
        seam.off_listener_error(self._on_listener_error)
        seam.off_operation(self._on_operation)

    def backend_seen(self, backend: str) -> None:
        """Name a backend in `asyncmq_build_info` before its first round trip."""
        if backend not in self._backend_names:
            self._backend_names.add(backend)
            self.build_info.labels(__version__, backend).set(1)

    def queue_seen(self, queue: str) -> None:
        """Create every per-queue series at 0, so rates and ratios exist from the start."""
        if queue in self._known_queues:
            return
        self._known_queues.add(queue)
        label = self.queue_label(queue)
        for metric in (self.stalled, self.rate_limited, self.in_progress, self.concurrency):
            self._child(metric, label)

    # -- children ---------------------------------------------------------------------
    def _child(self, metric: MetricWrapperBase, *labels: str) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def _for(self, job: Job) -> _Children:
        children = self._by_task.get((job.queue, job.task))
        if children is None:  # first sight of this task here: every counter of it starts at 0
            self.queue_seen(job.queue)
            children = self._by_task[(job.queue, job.task)] = _Children(self, job.queue, job.task)
        return children

    # -- handlers ---------------------------------------------------------------------
    def _grouped(self, jobs: Sequence[Job]) -> Iterable[tuple[_Children, Sequence[Job]]]:
        """`jobs` by (queue, task): usually one group, a batch of one task's jobs."""
        first = jobs[0]
        if all(job.task == first.task and job.queue == first.queue for job in jobs):
            return [(self._for(first), jobs)]
        groups: dict[tuple[str, str], list[Job]] = {}
        for job in jobs:
            groups.setdefault((job.queue, job.task), []).append(job)
        return [(self._for(group[0]), group) for group in groups.values()]

    def _on_stored(self, jobs: Sequence[Job]) -> None:
        for children, group in self._grouped(jobs):
            new = sum(job.attempt == 0 for job in group)  # a retry's backoff stores it again
            if new:
                children.enqueued.inc(new)

    # The handlers below run on every job: lookups are inline, and negative spans (clocks of
    # two hosts) are clamped by a comparison, not by `max()`, which costs three times more.
    def _on_started(self, job: Job) -> None:
        children = self._by_task.get((job.queue, job.task)) or self._for(job)
        started = job.started_at or 0.0
        children.started.inc()
        children.in_progress.inc()
        self._running[job.id] = job.queue
        value = job.meta.get("traceparent")
        exemplar = _exemplar_of(value) if value.__class__ is str else None
        if job.ready_at is not None:
            wait = started - job.ready_at
            children.wait.observe(wait if wait > 0.0 else 0.0, exemplar)
        if job.delay_until is not None:
            late = started - job.delay_until
            children.lateness.observe(late if late > 0.0 else 0.0, exemplar)

    def _on_completed(self, jobs: Sequence[Job]) -> None:
        for children, group in self._grouped(jobs):
            children.completed.inc(len(group))
            self._attempts_ended(children, group, with_latency=True)

    def _on_retried(self, jobs: Sequence[Job]) -> None:
        for children, group in self._grouped(jobs):
            children.retried.inc(len(group))
            self._attempts_ended(children, group)

    def _on_failed(self, jobs: Sequence[Job]) -> None:
        for children, group in self._grouped(jobs):
            for job in group:  # each job's error type is a label of its own
                error_type = self._error_label(str((job.error or {}).get("type", "unknown")))
                labels = (self.queue_label(job.queue), self.task_label(job.task), error_type)
                self._child(self.failed, *labels).inc()
            self._attempts_ended(children, group)

    def _attempts_ended(self, children: _Children, jobs: Sequence[Job], with_latency: bool = False) -> None:
        """The end of the attempts of one (queue, task) that began here, stored together: the
        in-progress gauge moves once and each histogram takes the batch's values in one call
        (one by one those that carry an exemplar, the sampled jobs' trace ids)."""
        running = self._running
        ended, durations, latencies = 0, [], []
        for job in jobs:
            finished_at = job.finished_at or job.created_at
            value = job.meta.get("traceparent")
            exemplar = _exemplar_of(value) if value.__class__ is str else None
            if running.pop(job.id, None) is not None:  # else begun elsewhere (recovered) or expired
                ended += 1
                if job.started_at is not None:
                    duration = finished_at - job.started_at
                    duration = duration if duration > 0.0 else 0.0
                    if exemplar is None:
                        durations.append(duration)
                    else:
                        children.duration.observe(duration, exemplar)
            if with_latency:
                latency = finished_at - job.created_at
                latency = latency if latency > 0.0 else 0.0
                if exemplar is None:
                    latencies.append(latency)
                else:
                    children.latency.observe(latency, exemplar)
        if ended:
            children.in_progress.dec(ended)
        _observe_all(children.duration, durations)
        _observe_all(children.latency, latencies)

    def _on_expired(self, job: Job) -> None:
        self._for(job).expired.inc()
        self._running.pop(job.id, None)

    def _on_cancelled(self, job: Job) -> None:
        self._for(job).cancelled.inc()

    def _on_abandoned(self, job: Job) -> None:
        if self._running.pop(job.id, None) is not None:
            self._for(job).in_progress.dec()

    def _on_deduplicated(self, job: Job) -> None:
        self._for(job).deduplicated.inc()

    def _on_debounced(self, job: Job) -> None:
        self._for(job).debounced.inc()

    def _on_stalled(self, job: Job) -> None:
        self.queue_seen(job.queue)
        self._child(self.stalled, self.queue_label(job.queue)).inc()

    def _on_rate_limited(self, payload: Payload) -> None:
        self.queue_seen(payload["queue"])
        self._child(self.rate_limited, self.queue_label(payload["queue"])).inc(payload.get("held_back", 1))

    def _on_worker_started(self, payload: Payload) -> None:
        queue = payload["queue"]
        self.queue_seen(queue)
        for task in list(TASK_REGISTRY.values()):
            if task.queue == queue:
                self.seed_task(queue, task.name)
        self._child(self.concurrency, self.queue_label(queue)).inc(payload["concurrency"])

    def _on_worker_stopped(self, payload: Payload) -> None:
        self._child(self.concurrency, self.queue_label(payload["queue"])).dec(payload["concurrency"])

    def _on_fold(self, label: str) -> None:
        self.folded.labels(label).inc()

    def _on_listener_error(self, event: str) -> None:
        self.listener_errors.labels(event).inc()

    def _on_operation(self, backend: str, operation: str, seconds: float) -> None:
        self.backend_seen(backend)  # build_info names every backend in use
        self._child(self.backend_operations, backend, operation).inc()
        self._child(self.backend_seconds, backend, operation).observe(seconds)

    def seed_task(self, queue: str, task: str) -> None:
        """Create a task's counters at 0 (the worker does it for every registered task)."""
        if (queue, task) not in self._by_task:
            self.queue_seen(queue)
            self._by_task[(queue, task)] = _Children(self, queue, task)


def _observe_all(histogram: Any, values: list[float]) -> None:
    """The fast histograms take many values in one call; prometheus_client's one by one."""
    observe_many = getattr(histogram, "observe_many", None)
    if observe_many is not None:
        observe_many(values)
    else:
        for value in values:
            histogram.observe(value)


@functools.lru_cache(maxsize=1024)
def _exemplar_of(traceparent: str) -> dict[str, str] | None:
    """Cached (one shared dict, never changed): the jobs of one bulk add share a traceparent."""
    trace_id = sampled_trace_id({"traceparent": traceparent})
    return None if trace_id is None else {"trace_id": trace_id}


def build_info(registry: CollectorRegistry, backends: Iterable[str], kind: Any = Gauge) -> Any:
    """`asyncmq_build_info{version,backend}`, 1 for each of `backends`."""
    gauge = kind(
        "asyncmq_build_info",
        "Always 1: the running version and backend.",
        ["version", "backend"],
        registry=registry,
        multiprocess_mode="max",  # one series, not one per worker process
    )
    for backend in backends:
        gauge.labels(__version__, backend).set(1)
    return gauge
