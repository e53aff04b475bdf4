"""What a backend stores, and the operations the engine calls on it.

Backends only store. The engine (`Queue`, `Worker`, `Scheduler`) decides every state
transition (`asyncmq.transitions`), stamps every timestamp, emits every event and hands
every policy in as an argument (retention, lease, `max_stalls`); a backend applies each
transition atomically and answers queries. It reads no settings. Each operation takes a
batch where the engine can give one, so a backend can do it in a single round trip.

Fencing: `claim` bumps a job's `token`, and so do recovery, cancellation and release.
`finish`, `heartbeat` and `save_progress` act only where the stored token still equals
the caller's, so a worker that lost its lease can never overwrite the job's new owner.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import orjson

from asyncmq.core.event import Event
from asyncmq.core.seam import seam
from asyncmq.deduplication import Deduplicated, Deduplication
from asyncmq.errors import ConfigurationError, MalformedJobError, MalformedScheduleError, UnsupportedError
from asyncmq.job import Job, JobState
from asyncmq.logging import get_logger
from asyncmq.schedule import Repeatable
from asyncmq.transitions import DEFAULT_RETENTION, Retention, StallRecovery, Transition

__all__ = [
    "BaseBackend",
    "ClaimResult",
    "EventWatch",
    "JobWatch",
    "QueueStats",
    "RateLimit",
    "UnreadableJob",
    "WorkerInfo",
    "read_workers",
    "redacted_url",
    "schedule_record",
    "url_secrets",
    "wait_set",
]

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most `limit` starts per `interval_s`, shared by every worker of the queue."""

    limit: int
    interval_s: float


@dataclass(frozen=True, slots=True)
class UnreadableJob:
    """A claimed job whose stored record makes no valid `Job` (changed by hand, written by
    other code). It cannot run, so the worker fails it at once with `reason` (which names the
    field) through `BaseBackend.fail_unreadable`, leaving the record otherwise as it is."""

    id: str
    queue: str
    #: The token as the store holds it, even if unreadable itself: what fences the failure.
    token: Any
    reason: str
    task: str = "?"

    def failed(self, now: float) -> Job:
        """The failure as a job, for the `job:failed` event (the record itself is unreadable)."""
        error = {"type": MalformedJobError.__name__, "message": self.reason}
        return Job(self.id, self.queue, self.task, status=JobState.FAILED, finished_at=now, error=error)


@dataclass(slots=True)
class ClaimResult:
    jobs: list[Job]
    #: Set when the rate limit held starts back: seconds until the next one is allowed.
    rate_limited_for_s: float | None = None
    #: Claimed jobs whose records cannot be read: for the worker to fail at once.
    unreadable: list[UnreadableJob] = field(default_factory=list)


@dataclass(slots=True)
class WorkerInfo:
    id: str
    queue: str
    host: str
    pid: int
    concurrency: int
    started_at: float
    heartbeat_at: float
    #: Past this moment without a heartbeat, the worker counts as gone.
    expires_at: float
    running: int = 0


@dataclass(slots=True)
class QueueStats:
    """What a scrape or `asyncmq queue info` needs, cheap to read: O(1) per queue."""

    counts: dict[str, int]
    oldest_waiting_at: float | None
    paused: bool
    workers: list[WorkerInfo] = field(default_factory=list)
    #: Ids of live workers whose stored description cannot be read.
    unreadable_workers: list[str] = field(default_factory=list)
    #: The queue totals (`asyncmq.transitions.TOTALS`) by task, then by name: monotonic counts
    #: of what happened to the queue's jobs since it was made (a name missing reads as 0).
    totals: dict[str, dict[str, int]] = field(default_factory=dict)


async def wait_set(event: asyncio.Event, timeout_s: float) -> None:
    """Until `event` is set (or was, since the last wait) or `timeout_s` passed, then clear it.
    Through `asyncio.timeout`, not `asyncio.wait_for`: on Python 3.11 a `wait_for` cancelled in
    the instant its wait ends returns instead of raising, and a stopping worker whose
    scheduler was woken just then would run on."""
    if timeout_s > 0 and not event.is_set():
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await event.wait()
    event.clear()


class JobWatch:
    """What `BaseBackend.watch_job` returns: `wait` ends when the job may have ended, or after
    its timeout. This one knows of no wake-ups, so each wait lasts its timeout: the waiter's
    slow poll is then all there is."""

    async def wait(self, timeout_s: float) -> None:
        await asyncio.sleep(max(timeout_s, 0))

    async def close(self) -> None:
        """Stop watching (unregister where the backend keeps a registration)."""


class EventWatch(JobWatch):
    """A watch woken by setting its `event` (kept set until the next wait, so a wake-up that
    comes while the waiter reads the job is not lost); `on_close` unregisters it."""

    def __init__(self, on_close: Callable[[EventWatch], Any] | None = None) -> None:
        self.event = asyncio.Event()
        self._on_close = on_close

    async def wait(self, timeout_s: float) -> None:
        await wait_set(self.event, timeout_s)

    async def close(self) -> None:
        on_close, self._on_close = self._on_close, None
        if on_close is not None:
            done = on_close(self)
            if asyncio.iscoroutine(done):
                await done


def read_workers(records: Iterable[tuple[str, Any]]) -> tuple[list[WorkerInfo], list[str]]:
    """Workers from (id, stored description: JSON text or a mapping) pairs, and the ids of
    those whose description is garbage: one bad record must not hide the others, nor break
    `asyncmq info`, which shows such a worker as unreadable instead."""
    workers: list[WorkerInfo] = []
    unreadable: list[str] = []
    for worker_id, record in records:
        try:
            info = orjson.loads(record) if isinstance(record, str | bytes) else record
            worker = WorkerInfo(**info)
        except (TypeError, ValueError):
            unreadable.append(worker_id)
            continue
        if all(type(getattr(worker, name)) in kinds for name, kinds in _WORKER_FIELD_TYPES.items()):
            workers.append(worker)
        else:
            unreadable.append(worker_id)
    return workers, unreadable


_NUMBER = frozenset({int, float})
#: Why `publish_events`/`read_events` refuse on a backend without cross-process events.
_NO_EVENTS = (
    "the {name} backend does not share events between processes: use a Redis, PostgreSQL "
    "or MongoDB backend (--backend URL or ASYNCMQ_BACKEND)"
)
_WORKER_FIELD_TYPES: dict[str, frozenset[type]] = {
    "id": frozenset({str}),
    "queue": frozenset({str}),
    "host": frozenset({str}),
    "pid": frozenset({int}),
    "concurrency": frozenset({int}),
    "started_at": _NUMBER,
    "heartbeat_at": _NUMBER,
    "expires_at": _NUMBER,
    "running": frozenset({int}),
}


class BaseBackend(ABC):
    """Storage for jobs, schedules, workers and queue flags. See the module docstring."""

    #: Short name used in logs and metric labels (`memory`, `redis`, ...).
    name: str = "base"
    #: Whether `enqueue` stores jobs with parents (`Job.deps`), and each step that ends a job
    #: releases or fails its children in that step (`asyncmq.dependencies`).
    supports_dependencies: bool = False
    #: Whether a job may depend on a job of another queue (a flow across queues): False where
    #: one atomic step cannot reach two queues (a Redis Cluster keeps each in its own slot).
    cross_queue_dependencies: bool = True

    def __init__(self) -> None:
        #: Round trips to the server by operation, counted by backends that make them.
        self.operation_counts: Counter[str] = Counter()
        #: Unreadable schedules already logged, by (queue, key): each is logged once.
        self._reported_schedules: set[tuple[str, str]] = set()

    def record_operation(self, operation: str, started: float) -> None:
        """Count one round trip begun at `started` (`time.perf_counter()`) and report it to the
        seam's operation listeners: how metrics see every backend without being handed each one."""
        self.operation_counts[operation] += 1
        if seam.operation_listeners:
            seam.operation(self.name, operation, time.perf_counter() - started)

    def failed_by_parents(self, jobs: Sequence[Job]) -> None:
        """Children that a parent's end failed in the step that ended it: their `job:failed`
        events, emitted by the process that made the step."""
        if jobs:
            seam.events.emit_jobs(Event.JOB_FAILED, jobs)

    async def connect(self) -> None:
        """Open connections. Called before first use; must be idempotent."""

    async def close(self) -> None:
        """Release connections. The backend may be connected again afterwards."""

    def size_for(self, concurrency: int) -> None:
        """A worker with `concurrency` slots is about to use this backend: a backend with a
        connection pool grows it to fit (each running task may report progress)."""

    # -- producing ------------------------------------------------------------------
    @abstractmethod
    async def enqueue(self, jobs: Sequence[Job], *, connection: Any = None) -> list[bool]:
        """Store jobs (`waiting` or `delayed` by their status). An id that already exists
        in the queue is left untouched and reported `False`. `connection`: a connection of
        the caller's, whose transaction the jobs join (backends that have one; the others
        refuse it with `refuse_connection`)."""

    def refuse_connection(self, connection: Any) -> None:
        if connection is not None:
            raise ConfigurationError(
                f"the {self.name} backend cannot enqueue in a caller's transaction (connection=): "
                "the PostgreSQL backend can"
            )

    # -- deduplication (`asyncmq.deduplication`) ------------------------------------
    async def enqueue_deduplicated(
        self,
        job: Job,
        deduplication: Deduplication,
        now: float,
        *,
        connection: Any = None,
        retention: Retention = DEFAULT_RETENTION,
    ) -> Deduplicated:
        """In one atomic step: if a job holds `deduplication.id` in the job's queue (see
        `asyncmq.deduplication`), store nothing and answer its id, restarting the key's ttl
        when `extend`; or, when `replace` and the holder is delayed, remove the holder and
        store `job` in its place; else store `job` (as `enqueue` does) holding the key, the
        key's expiry `deduplication.expires_at(now)`. `job` whose id exists stores nothing.
        Sent again after a lost reply, a job that took the key answers stored. The same step
        adds to the queue totals of `job.task` (`asyncmq.transitions`): `deduplicated` for a
        duplicate, `debounced` (and `enqueued`) for a job stored in its holder's place. A replaced
        holder's blocked children are told it is gone, as by `remove_job`."""
        raise UnsupportedError(f"the {self.name} backend does not support deduplication")

    async def deduplication_holder(self, queue: str, deduplication_id: str, now: float) -> str | None:
        """The id of the job holding `deduplication_id` in `queue` at `now`, if one does."""
        raise UnsupportedError(f"the {self.name} backend does not support deduplication")

    async def remove_deduplication_key(self, queue: str, deduplication_id: str) -> bool:
        """Let the key go (its job stays); `False` if there was no record of it."""
        raise UnsupportedError(f"the {self.name} backend does not support deduplication")

    # -- consuming ------------------------------------------------------------------
    @abstractmethod
    async def claim(
        self, queue: str, worker_id: str, limit: int, lease_s: float, now: float, rate: RateLimit | None
    ) -> ClaimResult:
        """Move up to `limit` waiting jobs to `active` (lowest priority number, then oldest
        first), bumping `attempt` and `token`. Nothing while the queue is paused; no more
        than the rate limit allows, taking its tokens in the same atomic step."""

    @abstractmethod
    async def fail_unreadable(
        self, jobs: Sequence[UnreadableJob], now: float, retention: Retention
    ) -> list[bool]:
        """Fail each job still active under its stored token, at `now`, with a
        `MalformedJobError` error record of its reason, filed under `failed` by `retention`;
        its other fields stay as stored, for inspection. Returns which were failed."""

    @abstractmethod
    async def wait_for_jobs(self, queue: str, timeout_s: float) -> None:
        """Return when a job may have become ready, or after `timeout_s`."""

    @abstractmethod
    async def finish(self, jobs: Sequence[Job], retention: Retention) -> list[bool]:
        """Store the outcome of attempts (a terminal, `waiting` or `delayed` status), each only
        if the job is still `active` under the caller's token. Returns which were accepted."""

    @abstractmethod
    async def release(self, jobs: Sequence[Job], transition: Transition, now: float) -> None:
        """Apply `transition` (the release) to each job still active under the caller's token."""

    @abstractmethod
    async def heartbeat(self, worker: WorkerInfo, jobs: Sequence[Job], lease_until: float) -> list[str]:
        """Record the worker alive and extend its jobs' leases; return ids it no longer owns."""

    @abstractmethod
    async def remove_worker(self, worker: WorkerInfo) -> None: ...

    @abstractmethod
    async def save_progress(self, job: Job) -> bool:
        """Store `job.progress` if the caller still owns the job."""

    # -- scheduling -----------------------------------------------------------------
    @abstractmethod
    async def promote_due(self, queue: str, now: float, limit: int) -> tuple[int, float | None]:
        """Move delayed jobs due by `now` to `waiting`; return how many, and when the next is due."""

    @abstractmethod
    async def wait_for_schedule(self, queue: str, timeout_s: float) -> None:
        """Return when a delayed job or repeatable was added, or after `timeout_s`."""

    @abstractmethod
    async def recover_stalled(self, queue: str, now: float, recovery: StallRecovery) -> list[Job]:
        """Take back active jobs whose lease ended by `recovery.transition_for(job.stalls)`,
        each in the same atomic step as finding it; return them as they are now."""

    async def repair_dependencies(self, queue: str, now: float) -> None:
        """Apply to the blocked jobs of `queue` the ends of parents that never reached them. A
        backend whose end of a job and release of its children are separate steps (MongoDB:
        no transaction) loses the release when its process dies between them; the scheduler
        calls this every 30 s, so such a child waits one period more, never for good. This
        default has nothing to repair: the end and the release are one step."""

    @abstractmethod
    async def add_repeatable(self, repeatable: Repeatable) -> bool:
        """Store a schedule unless its key exists; `False` if it did."""

    @abstractmethod
    async def remove_repeatable(self, queue: str, key: str) -> bool: ...

    @abstractmethod
    async def stored_repeatables(self, queue: str) -> list[tuple[str, object]]:
        """Every schedule of `queue` as stored, unchecked: (key, record), the record decoded
        from its JSON when it is JSON, with the stored `next_run_at` in it."""

    async def read_repeatables(self, queue: str) -> tuple[list[Repeatable], dict[str, str]]:
        """The schedules of `queue` that can be read, and why each other one cannot, by key.
        An unreadable schedule is logged the first time this backend reads it; it never stops
        the others from firing, and `Queue.remove_repeatable` removes it."""
        readable: list[Repeatable] = []
        unreadable: dict[str, str] = {}
        for key, record in await self.stored_repeatables(queue):
            try:
                readable.append(Repeatable.from_record(record, key))
            except MalformedScheduleError as exc:
                unreadable[key] = str(exc)
                if (queue, key) not in self._reported_schedules:
                    self._reported_schedules.add((queue, key))
                    log.error(
                        "queue %r: %s; skipped (asyncmq queue remove-repeatable removes it)", queue, exc
                    )
        return readable, unreadable

    async def repeatables(self, queue: str) -> list[Repeatable]:
        """The schedules of `queue` that can be read (see `read_repeatables`)."""
        return (await self.read_repeatables(queue))[0]

    @abstractmethod
    async def advance_repeatable(self, queue: str, key: str, expected_at: float, next_at: float) -> bool:
        """Compare-and-set a schedule's next firing time; `False` if someone moved it elsewhere.
        Already at `next_at` counts as success: the same call sent again after a lost reply."""

    # -- control and inspection -----------------------------------------------------
    @abstractmethod
    async def set_paused(self, queue: str, paused: bool) -> None: ...

    @abstractmethod
    async def transition(
        self, queue: str, job_id: str, transition: Transition, now: float, retention: Retention
    ) -> Job | None:
        """Apply `transition` to the job if its status is one of the transition's sources, in
        one atomic step, filing a finished job under `retention`; return the job as it is
        now, or `None` if it is missing or in another state. Sent again after a lost reply,
        it returns the job again."""

    @abstractmethod
    async def get_job(self, queue: str, job_id: str) -> Job | None:
        """The job, `None` if there is none; `MalformedJobError` naming the field for a record
        that makes no valid job (one changed by hand, kept for inspection)."""

    @abstractmethod
    async def list_jobs(self, queue: str, state: JobState, limit: int, offset: int = 0) -> list[Job]: ...

    @abstractmethod
    async def remove_job(self, queue: str, job_id: str, retention: Retention = DEFAULT_RETENTION) -> bool:
        """Delete a job that is not active. In the same step, a job that had not ended acts on
        its blocked children as `asyncmq.dependencies.parent_removed` says: the ones it fails
        are filed under `failed` by `retention`, their `job:failed` events emitted here."""

    @abstractmethod
    async def drain(
        self, queue: str, include_delayed: bool = False, retention: Retention = DEFAULT_RETENTION
    ) -> int:
        """Delete every waiting job, and every delayed one too with `include_delayed` except a
        schedule's pending occurrence (a job with a `repeat_key`: it is the schedule's next
        firing, which `remove_repeatable` stops); return how many were deleted. Their blocked
        children are told, as by `remove_job`."""

    @abstractmethod
    async def purge_finished(self, queue: str, now: float, retention: Retention) -> int:
        """Delete finished jobs past their retention; return how many."""

    @abstractmethod
    async def delete_queue(self, queue: str) -> None:
        """Delete the queue and everything it holds: jobs, schedules, workers, flags, events."""

    @abstractmethod
    async def stats(self, queue: str, now: float) -> QueueStats: ...

    @abstractmethod
    async def queues(self) -> list[str]:
        """Every queue that holds jobs, schedules or workers."""

    # -- results ----------------------------------------------------------------------
    async def watch_job(self, queue: str, job_id: str) -> JobWatch:
        """Start watching for the end of a job (a terminal state, or its record deleted), for
        `Queue.result`: the watch's `wait` returns early when it may have ended. Called before
        the waiter's first read of the job, so that an end after that read wakes it. A backend
        that can tell only pays for it while someone watches; this default tells nothing (the
        waiter polls slowly)."""
        return JobWatch()

    # -- cross-process events (optional) ----------------------------------------------
    async def publish_events(self, events: Sequence[tuple[str, dict[str, Any]]]) -> None:
        """Make (event name, payload) pairs readable by `read_events` in other processes."""
        raise UnsupportedError(_NO_EVENTS.format(name=self.name))

    async def read_events(
        self, queue: str, after: str, block_s: float
    ) -> list[tuple[str, str, dict[str, Any]]]:
        """Events of `queue` published after position `after` ("$": from now on), waiting
        up to `block_s` for the first; returns (position, event name, payload) triples."""
        raise UnsupportedError(_NO_EVENTS.format(name=self.name))


def schedule_record(raw: object, next_run_at: object) -> object:
    """A stored schedule for `read_repeatables`: its record decoded when it is JSON text, with
    the `next_run_at` stored beside it (a float when it reads as one) when there is one. What
    cannot be decoded is returned as it is, to be reported unreadable."""
    record = raw
    if isinstance(raw, str | bytes):
        try:
            record = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return raw
    if isinstance(record, dict) and next_run_at is not None:
        try:
            record["next_run_at"] = float(next_run_at)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            record["next_run_at"] = next_run_at
    return record


#: A query or keyword parameter holding a secret (`password=`, `sslpassword=`,
#: `tlsCertificateKeyFilePassword=`), up to the next separator.
_SECRET_PARAM = re.compile(r"(?i)(?<![\w.-])([\w.-]*(?:password|passwd|pwd|secret)[\w.-]*=)([^&;\s]*)")
_MASK = "***"


def _split_password(url: str) -> tuple[str, str | None, str]:
    """`url` around the password of its user part: (before, password or None, after). The
    password runs from the first ':' after `scheme://` to the last '@', as a person typing it
    meant, so an unescaped '/', '#', '?' or '@' in it, which a URL parser would cut at, is
    still all of it. Any text is accepted: a mistyped scheme, or no scheme at all."""
    scheme_end = url.find("://")
    start = scheme_end + 3 if scheme_end >= 0 else 0
    at = url.rfind("@")
    colon = url.find(":", start, at) if at > start else -1
    if colon < 0:
        return url, None, ""
    return url[: colon + 1], url[colon + 1 : at], url[at:]


def redacted_url(url: str) -> str:
    """`url` with its passwords masked (`redis://user:***@host`, `?password=***`): the only
    form of a backend's address that a repr, an error, a log line, the CLI or a bench report
    shows."""
    masked = _SECRET_PARAM.sub(lambda found: found[1] + _MASK, url)
    before, password, after = _split_password(masked)
    return masked if password is None else f"{before}{_MASK}{after}"


def url_secrets(url: str) -> list[str]:
    """The passwords in `url`, longest first, as they may turn up in a driver's error about a
    URL it misread: whole, as its parser cut them (at a stray '/'), and unescaped. For
    masking text that quotes them, such as a traceback."""
    found = [value for _, value in _SECRET_PARAM.findall(url)]
    password = _split_password(_SECRET_PARAM.sub("", url))[1] or ""
    found += [password, re.split(r"[/?#]", password)[0]]
    found += [unquote(secret) for secret in found]
    return sorted({secret for secret in found if secret}, key=len, reverse=True)
