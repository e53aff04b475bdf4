"""Lifecycle events: how metrics, tracing and user code observe jobs.

The engine emits through `event_emitter` (the process's, also `asyncmq.core.seam.seam.events`
and `asyncmq.event_emitter`); subscribers
(`asyncmq.observability`, user callbacks) listen. The engine never imports a subscriber.
A callback that raises is logged and counted in `listener_errors`, and never breaks the
job or the worker. Async callbacks run as their
own tasks, so a slow one never holds a job slot.
"""

from __future__ import annotations

import asyncio
import inspect
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from asyncmq.logging import get_logger

if TYPE_CHECKING:
    from asyncmq.job import Job

__all__ = ["BatchListener", "Event", "EventEmitter", "JobListener", "Listener", "Payload", "event_emitter"]

log = get_logger(__name__)

Payload = dict[str, Any]
Listener = Callable[[Payload], Awaitable[None] | None]
#: Receives the job itself, not a payload: for subscribers on the hot path (metrics), which
#: read a few attributes and must not pay for a dict per event. It must not change the job.
JobListener = Callable[["Job"], None]
#: Receives the jobs of one event in one call: a worker's settled batch (its outcomes stored
#: in one round trip), a bulk add. For subscribers that update a counter once per batch.
BatchListener = Callable[[Sequence["Job"]], None]


class Event(StrEnum):
    """Every event name asyncmq emits. `on()` rejects any other name, so a typo fails loudly."""

    JOB_ENQUEUED = "job:enqueued"
    JOB_DELAYED = "job:delayed"
    #: Stored to run after its parents (`depends_on`).
    JOB_BLOCKED = "job:blocked"
    JOB_STARTED = "job:started"
    JOB_PROGRESS = "job:progress"
    JOB_COMPLETED = "job:completed"
    JOB_RETRIED = "job:retried"
    JOB_FAILED = "job:failed"
    JOB_EXPIRED = "job:expired"
    JOB_CANCELLED = "job:cancelled"
    JOB_STALLED = "job:stalled"
    #: This worker stopped an attempt without an outcome: the job was taken from it
    #: (cancelled, or recovered after its lease ran out) or handed back at shutdown.
    JOB_ABANDONED = "job:abandoned"
    #: A job was not stored: another job holds its deduplication key (`asyncmq.deduplication`).
    JOB_DEDUPLICATED = "job:deduplicated"
    #: A job was stored in the place of the delayed job that held its deduplication key.
    JOB_DEBOUNCED = "job:debounced"
    WORKER_STARTED = "worker:started"
    WORKER_HEARTBEAT = "worker:heartbeat"
    WORKER_STOPPED = "worker:stopped"
    QUEUE_PAUSED = "queue:paused"
    QUEUE_RESUMED = "queue:resumed"
    QUEUE_RATE_LIMITED = "queue:rate_limited"


class EventEmitter:
    """Synchronous fan-out to listeners; async listeners are scheduled, not awaited."""

    def __init__(self) -> None:
        self._listeners: dict[Event, list[Listener]] = {event: [] for event in Event}
        self._job_listeners: dict[Event, list[JobListener]] = {event: [] for event in Event}
        self._batch_listeners: dict[Event, list[BatchListener]] = {event: [] for event in Event}
        self._pending: set[asyncio.Task[None]] = set()
        self.listener_errors: Counter[str] = Counter()
        #: Called with the event name when a listener raises (the seam's error listeners).
        self.on_listener_error: Callable[[str], None] | None = None

    def reset(self) -> None:
        """Unsubscribe every listener and forget the error counts."""
        for listeners in (self._listeners, self._job_listeners, self._batch_listeners):
            for subscribed in listeners.values():
                subscribed.clear()
        self.listener_errors.clear()

    def on(self, name: Event | str, callback: Listener) -> Listener:
        """Subscribe `callback` to `name`; returns it, so `on` works as a decorator argument."""
        self._listeners[Event(name)].append(callback)
        return callback

    def off(self, name: Event | str, callback: Listener) -> None:
        """Unsubscribe; removing a callback that is not subscribed does nothing."""
        listeners = self._listeners[Event(name)]
        if callback in listeners:
            listeners.remove(callback)

    def has_listeners(self, name: Event) -> bool:
        """Lets hot paths skip building a payload nobody reads."""
        return bool(self._listeners[name])

    def on_job(self, name: Event | str, callback: JobListener) -> None:
        """Subscribe `callback(job)` to a `job:*` event (see `JobListener`)."""
        self._job_listeners[Event(name)].append(callback)

    def off_job(self, name: Event | str, callback: JobListener) -> None:
        listeners = self._job_listeners[Event(name)]
        if callback in listeners:
            listeners.remove(callback)

    def on_jobs(self, name: Event | str, callback: BatchListener) -> None:
        """Subscribe `callback(jobs)` to a `job:*` event (see `BatchListener`); a job emitted
        on its own comes as a one-job sequence."""
        self._batch_listeners[Event(name)].append(callback)

    def off_jobs(self, name: Event | str, callback: BatchListener) -> None:
        listeners = self._batch_listeners[Event(name)]
        if callback in listeners:
            listeners.remove(callback)

    def emit_job(
        self, event: Event, job: Job, *, moments: dict[str, float] | None = None, **extra: Any
    ) -> None:
        """Emit a `job:*` event: job listeners get the job, payload listeners a payload built
        once, and only when someone listens (`moments` join its timestamps, `extra` its keys)."""
        if self._batch_listeners[event]:
            self._call_batch_listeners(event, (job,))
        for callback in self._job_listeners[event]:  # as `_emit_one`, inline: every attempt emits
            try:
                callback(job)
            except Exception:
                self._record_error(event, callback)
        if self._listeners[event]:
            self._emit_payload(event, job, moments, extra)

    def emit_jobs(self, event: Event, jobs: Sequence[Job], **extra: Any) -> None:
        """Emit `event` for each of `jobs`, which happened together: batch listeners get them
        in one call, the others one job at a time, as from `emit_job`."""
        if not jobs:
            return
        if self._batch_listeners[event]:
            self._call_batch_listeners(event, jobs)
        if self._job_listeners[event] or self._listeners[event]:
            for job in jobs:
                self._emit_one(event, job, extra)

    def _emit_one(self, event: Event, job: Job, extra: dict[str, Any]) -> None:
        for callback in self._job_listeners[event]:
            try:
                callback(job)
            except Exception:
                self._record_error(event, callback)
        if self._listeners[event]:
            self._emit_payload(event, job, None, extra)

    def _emit_payload(
        self, event: Event, job: Job, moments: dict[str, float] | None, extra: dict[str, Any]
    ) -> None:
        payload = job.event_payload()
        if moments:
            payload["timestamps"].update(moments)
        payload.update(extra)
        self.emit(event, payload)

    def _call_batch_listeners(self, event: Event, jobs: Sequence[Job]) -> None:
        for callback in self._batch_listeners[event]:
            try:
                callback(jobs)
            except Exception:
                self._record_error(event, callback)

    def emit(self, name: Event | str, payload: Payload) -> None:
        event = Event(name)
        for callback in tuple(self._listeners[event]):
            try:
                outcome = callback(payload)
            except Exception:
                self._record_error(event, callback)
                continue
            if inspect.isawaitable(outcome):
                self._schedule(event, callback, outcome)

    async def drain(self) -> None:
        """Wait for async listeners still running: call before a process exits."""
        while self._pending:
            await asyncio.gather(*tuple(self._pending), return_exceptions=True)

    def _schedule(self, event: Event, callback: Listener, awaitable: Awaitable[None]) -> None:
        async def run() -> None:
            try:
                await awaitable
            except Exception:
                self._record_error(event, callback)

        task = asyncio.get_running_loop().create_task(run())
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    def _record_error(self, event: Event, callback: object) -> None:
        self.listener_errors[event.value] += 1
        log.exception("listener %r for %s raised; the job goes on", callback, event.value)
        if self.on_listener_error is not None:
            self.on_listener_error(event.value)


event_emitter = EventEmitter()
