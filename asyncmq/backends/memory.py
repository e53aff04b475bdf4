"""The embedded backend: everything in this process's memory.

It is the default, the test fake, and the fastest backend: a single process that both
enqueues and works (the demo, tests, a script) needs nothing else. Nothing survives the
process, and other processes cannot see it. Every operation completes without yielding
to the event loop, which is what makes each one atomic here.
"""

from __future__ import annotations

import asyncio
import copy
import heapq
import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from asyncmq.backends.base import (
    BaseBackend,
    ClaimResult,
    EventWatch,
    JobWatch,
    QueueStats,
    RateLimit,
    UnreadableJob,
    WorkerInfo,
    read_workers,
)
from asyncmq.deduplication import Deduplicated, Deduplication
from asyncmq.dependencies import add_child, children_of, parent_ended, parent_removed, ref, split_ref
from asyncmq.errors import MalformedJobError, UnknownParentError
from asyncmq.job import TERMINAL_STATES, Job, JobState, malformed_field, malformed_reason
from asyncmq.logging import get_logger
from asyncmq.schedule import Repeatable
from asyncmq.transitions import DEFAULT_RETENTION, OUTCOME_TOTALS, Retention, StallRecovery, Transition

__all__ = ["InMemoryBackend"]

log = get_logger(__name__)


@dataclass(slots=True)
class _TokenBucket:
    tokens: float
    updated_at: float

    def take(self, want: int, rate: RateLimit, now: float) -> tuple[int, float | None]:
        per_s = rate.limit / rate.interval_s
        self.tokens = min(float(rate.limit), self.tokens + (now - self.updated_at) * per_s)
        self.updated_at = now
        granted = min(want, int(self.tokens))
        self.tokens -= granted
        if granted:
            return granted, None
        return 0, (1 - self.tokens) / per_s


@dataclass(slots=True)
class _Store:
    """One queue. Heaps use lazy deletion: an entry counts only while its job still has the
    status and `token` it was pushed with."""

    jobs: dict[str, Job] = field(default_factory=dict)
    waiting: list[tuple[int, float, int, str, int]] = field(default_factory=list)
    waiting_ids: dict[str, float] = field(default_factory=dict)
    delayed: list[tuple[float, int, str, int]] = field(default_factory=list)
    delayed_count: int = 0
    active: dict[str, Job] = field(default_factory=dict)
    blocked: dict[str, Job] = field(default_factory=dict)
    finished: dict[JobState, dict[str, float]] = field(
        default_factory=lambda: {state: {} for state in TERMINAL_STATES}
    )
    paused: bool = False
    #: Schedules as records, as a server stores them: a damaged one reads as damaged.
    repeatables: dict[str, dict[str, Any]] = field(default_factory=dict)
    workers: dict[str, WorkerInfo] = field(default_factory=dict)
    bucket: _TokenBucket | None = None
    #: The queue totals, by task then name (`asyncmq.transitions.TOTALS`).
    totals: dict[str, dict[str, int]] = field(default_factory=dict)
    #: Deduplication keys: id -> (the job holding it, when it lets go by time or None).
    dedup: dict[str, tuple[str, float | None]] = field(default_factory=dict)
    job_waiters: list[asyncio.Future[None]] = field(default_factory=list)
    schedule_waiters: list[asyncio.Future[None]] = field(default_factory=list)

    def count(self, task: object, total: str) -> None:
        by_name = self.totals.setdefault(task if type(task) is str else "?", {})
        by_name[total] = by_name.get(total, 0) + 1


def _wake(waiters: list[asyncio.Future[None]]) -> None:
    for waiter in waiters:
        if not waiter.done():
            waiter.set_result(None)
    waiters.clear()


async def _wait(waiters: list[asyncio.Future[None]], timeout_s: float) -> None:
    waiter = asyncio.get_running_loop().create_future()
    waiters.append(waiter)
    try:
        async with asyncio.timeout(max(timeout_s, 0)):  # not wait_for: see `wait_set`
            await waiter
    except TimeoutError:
        pass
    finally:
        if waiter in waiters:
            waiters.remove(waiter)


class InMemoryBackend(BaseBackend):
    name = "memory"
    supports_dependencies = True

    def __init__(self) -> None:
        super().__init__()
        self._stores: dict[str, _Store] = {}
        self._seq = itertools.count()
        #: `Queue.result` waiters by (queue, job id): woken when the job ends or is deleted.
        self._job_watches: dict[tuple[str, str], set[EventWatch]] = {}

    def _peek(self, queue: str) -> _Store:
        """For reads: an unknown queue reads as empty and is not created, so looking at a
        queue never makes `queues()` list it."""
        return self._stores.get(queue) or _Store()

    def _store(self, queue: str) -> _Store:
        store = self._stores.get(queue)
        if store is None:
            store = self._stores[queue] = _Store()
        return store

    # -- placement helpers: the only code that touches the heaps ----------------------
    def _place(self, store: _Store, job: Job) -> None:
        store.jobs[job.id] = job
        if job.status is JobState.WAITING:
            ready_at = job.ready_at or job.created_at
            heapq.heappush(store.waiting, (job.priority, ready_at, next(self._seq), job.id, job.token))
            store.waiting_ids[job.id] = ready_at
            _wake(store.job_waiters)
        elif job.status is JobState.DELAYED:
            assert job.delay_until is not None
            earliest = store.delayed[0][0] if store.delayed else None
            heapq.heappush(store.delayed, (job.delay_until, next(self._seq), job.id, job.token))
            store.delayed_count += 1
            if earliest is None or job.delay_until < earliest:
                _wake(store.schedule_waiters)
        elif job.status is JobState.ACTIVE:
            store.active[job.id] = job
        elif job.status is JobState.BLOCKED:
            store.blocked[job.id] = job
        else:
            store.finished[job.status][job.id] = job.finished_at or 0.0
            if self._job_watches:
                self._job_ended(job.queue, job.id)

    def _job_ended(self, queue: str, job_id: str) -> None:
        for watch in self._job_watches.get((queue, job_id), ()):
            watch.event.set()

    def _unplace(self, store: _Store, job: Job) -> None:
        """Take a job out of its state's index; heap entries die by their token."""
        if job.status is JobState.WAITING:
            store.waiting_ids.pop(job.id, None)
        elif job.status is JobState.DELAYED:
            store.delayed_count -= 1
        elif job.status is JobState.ACTIVE:
            store.active.pop(job.id, None)
        elif job.status is JobState.BLOCKED:
            store.blocked.pop(job.id, None)
        else:
            store.finished[job.status].pop(job.id, None)

    def _move(self, store: _Store, job: Job, status: JobState) -> None:
        self._unplace(store, job)
        job.status = status
        job.token += 1  # invalidates old heap entries and the previous owner
        self._place(store, job)

    def _apply(
        self, store: _Store, job: Job, transition: Transition, now: float, retention: Retention | None
    ) -> None:
        self._unplace(store, job)
        transition.apply(job, now)  # bumps the token: old heap entries and owner are stale
        self._place(store, job)
        for total in transition.totals:
            store.count(job.task, total)
        if job.status in TERMINAL_STATES:
            if job.deps:
                self._parent_ended(job, now)
            if retention is not None:
                self._trim(store, job.status, retention.keep)

    # -- producing --------------------------------------------------------------------
    async def enqueue(self, jobs: Sequence[Job], *, connection: Any = None) -> list[bool]:
        self.refuse_connection(connection)
        for job in jobs:
            if job.deps:  # a loop, not any(): this runs for every add
                return self._enqueue_children(jobs)
        stored = []
        for job in jobs:
            store = self._store(job.queue)
            if job.id in store.jobs:
                stored.append(False)
                continue
            self._place(store, job)
            store.count(job.task, "enqueued")
            stored.append(True)
        return stored

    def _enqueue_children(self, jobs: Sequence[Job]) -> list[bool]:
        """`enqueue` of a call holding jobs with parents: all or nothing if a parent is missing."""
        self._check_parents(jobs)
        stored, failed, now = [], [], time.time()
        for job in jobs:
            store = self._store(job.queue)
            if job.id in store.jobs:
                stored.append(False)
                continue
            if job.deps:
                job = self._depend(job, now)
            self._place(store, job)
            store.count(job.task, "enqueued")
            if job.status is JobState.FAILED:
                store.count(job.task, "failed")
                failed.append(job.clone())
            stored.append(True)
        self.failed_by_parents(failed)
        return stored

    # -- deduplication ----------------------------------------------------------------
    def _holder(self, store: _Store, deduplication_id: str, now: float) -> str | None:
        record = store.dedup.get(deduplication_id)
        if record is None:
            return None
        holder, expires_at = record
        if expires_at is not None:
            return holder if expires_at > now else None
        job = store.jobs.get(holder)
        return holder if job is not None and job.status not in TERMINAL_STATES else None

    async def enqueue_deduplicated(
        self,
        job: Job,
        deduplication: Deduplication,
        now: float,
        *,
        connection: Any = None,
        retention: Retention = DEFAULT_RETENTION,
    ) -> Deduplicated:
        self.refuse_connection(connection)
        store = self._store(job.queue)
        key = deduplication.id
        holder = self._holder(store, key, now)
        held = None if holder is None else store.jobs.get(holder)
        if held is not None and held.id == job.id and held.created_at == job.created_at:
            return Deduplicated(True, job.id)  # this very store, sent again
        replacing = deduplication.replace and held is not None and held.status is JobState.DELAYED
        if holder is not None and not replacing:
            if deduplication.extend:
                store.dedup[key] = (holder, deduplication.expires_at(now))
            store.count(job.task, "deduplicated")
            return Deduplicated(False, holder)
        if job.id in store.jobs and job.id != holder:
            return Deduplicated(False, None)
        if held is not None:  # replacing it
            self._remove(store, held)
            store.count(job.task, "debounced")
            expires_at = deduplication.expires_in_place_of(store.dedup[key][1], now)
        else:
            expires_at = deduplication.expires_at(now)
        self._place(store, job)
        store.count(job.task, "enqueued")
        store.dedup[key] = (job.id, expires_at)
        return Deduplicated(True, job.id, None if held is None else held.id)

    async def deduplication_holder(self, queue: str, deduplication_id: str, now: float) -> str | None:
        return self._holder(self._peek(queue), deduplication_id, now)

    async def remove_deduplication_key(self, queue: str, deduplication_id: str) -> bool:
        return self._peek(queue).dedup.pop(deduplication_id, None) is not None

    # -- dependencies (`asyncmq.dependencies`) ----------------------------------------
    def _lookup(self, reference: str) -> Job | None:
        queue, job_id = split_ref(reference)
        store = self._stores.get(queue)
        return None if store is None else store.jobs.get(job_id)

    def _check_parents(self, jobs: Sequence[Job]) -> None:
        """Every parent exists, or comes earlier in the same call (a flow): else nothing is stored."""
        earlier: set[str] = set()
        for job in jobs:
            for parent in job.deps["parents"] if job.deps else ():
                if parent not in earlier and self._lookup(parent) is None:
                    queue, parent_id = split_ref(parent)
                    raise UnknownParentError(
                        f"job {job.id} depends on job {parent_id} of queue {queue!r}, which does not "
                        "exist: nothing was stored"
                    )
            earlier.add(ref(job.queue, job.id))

    def _depend(self, job: Job, now: float) -> Job:
        """A new child as stored: resolved by the parents that have ended, recorded on the others."""
        job = job.clone()
        job.deps = copy.deepcopy(job.deps)
        for reference in list(job.deps["pending"] if job.deps else ()):
            parent = self._lookup(reference)
            assert parent is not None  # `_check_parents`
            parent_ended(job, parent, now)
            if job.status is not JobState.BLOCKED:
                if job.status is JobState.FAILED:
                    return job
                continue
            if reference in job.deps["pending"]:  # type: ignore[index]
                add_child(parent, job)
        return job

    def _parent_ended(self, parent: Job, now: float, removed: bool = False) -> None:
        """Release or fail the children of a job that just ended (or, `removed`, was removed
        before it ended), and theirs in turn."""
        failed, ended = [], [parent]
        while ended:
            job = ended.pop()
            for reference in children_of(job):
                child = self._lookup(reference)
                if child is None or child.status is not JobState.BLOCKED:
                    continue
                store = self._store(child.queue)
                self._unplace(store, child)
                if (
                    parent_removed(child, job.queue, job.id, now)
                    if removed and job is parent
                    else parent_ended(child, job, now)
                ):
                    store.count(child.task, "failed")
                    failed.append(child.clone())
                    ended.append(child)
                self._place(store, child)
        self.failed_by_parents(failed)

    # -- consuming --------------------------------------------------------------------
    async def claim(
        self, queue: str, worker_id: str, limit: int, lease_s: float, now: float, rate: RateLimit | None
    ) -> ClaimResult:
        store = self._store(queue)
        if store.paused or not store.waiting_ids:
            return ClaimResult([])
        if rate is not None:
            if store.bucket is None:
                store.bucket = _TokenBucket(float(rate.limit), now)
            limit, wait_s = store.bucket.take(min(limit, len(store.waiting_ids)), rate, now)
            if not limit:
                return ClaimResult([], wait_s)
        claimed: list[Job] = []
        unreadable: list[UnreadableJob] = []
        heap, jobs, waiting_ids = store.waiting, store.jobs, store.waiting_ids
        while heap and len(claimed) + len(unreadable) < limit:
            _, _, _, job_id, token = heapq.heappop(heap)
            job = jobs.get(job_id)
            # A stale entry, unless the token itself is garbage: then the job is unreadable.
            if job is None or job_id not in waiting_ids or (job.token != token and type(job.token) is int):
                if job is None and waiting_ids.pop(job_id, None) is not None:
                    log.error("job %s of queue %r lost its record while waiting; dropped", job_id, queue)
                continue
            del waiting_ids[job_id]
            store.active[job_id] = job
            store.count(job.task, "claimed")
            job.worker_id, job.lease_until = worker_id, now + lease_s
            wrong = malformed_field(job)
            if wrong is not None:
                reason = malformed_reason(f"job record {job_id!r}", wrong, getattr(job, wrong))
                job.status = JobState.ACTIVE
                task = job.task if type(job.task) is str else "?"
                unreadable.append(UnreadableJob(job_id, queue, job.token, reason, task))
                continue
            job.status = JobState.ACTIVE
            job.attempt += 1
            job.token += 1
            claimed.append(job.clone())
        return ClaimResult(claimed, unreadable=unreadable)

    async def fail_unreadable(
        self, jobs: Sequence[UnreadableJob], now: float, retention: Retention
    ) -> list[bool]:
        failed = []
        for unreadable in jobs:
            store = self._store(unreadable.queue)
            job = store.jobs.get(unreadable.id)
            if job is None or job.status is not JobState.ACTIVE or job.token != unreadable.token:
                failed.append(False)
                continue
            self._fail_active(store, unreadable, job, now, retention)
            failed.append(True)
        return failed

    def _fail_active(
        self, store: _Store, unreadable: UnreadableJob, job: Job, now: float, retention: Retention
    ) -> None:
        """Fail an active job that cannot be read, filed by the id it is stored under: its own
        `id` field may be the garbage."""
        del store.active[unreadable.id]
        job.status, job.finished_at, job.lease_until, job.worker_id = JobState.FAILED, now, None, None
        job.error = {"type": MalformedJobError.__name__, "message": unreadable.reason}
        if type(job.token) is int:
            job.token += 1
        store.finished[JobState.FAILED][unreadable.id] = now
        store.count(job.task, "failed")
        if type(job.deps) is dict and type(job.id) is str:
            self._parent_ended(job, now)
        self._trim(store, JobState.FAILED, retention.keep)

    async def wait_for_jobs(self, queue: str, timeout_s: float) -> None:
        store = self._store(queue)
        if store.waiting_ids and not store.paused:
            return
        await _wait(store.job_waiters, timeout_s)

    def _owned(self, job: Job) -> tuple[_Store, Job] | None:
        store = self._store(job.queue)
        stored = store.jobs.get(job.id)
        if stored is None or stored.status is not JobState.ACTIVE or stored.token != job.token:
            return None
        return store, stored

    async def finish(self, jobs: Sequence[Job], retention: Retention) -> list[bool]:
        accepted = []
        for job in jobs:
            owned = self._owned(job)
            if owned is None:
                accepted.append(False)
                continue
            store = owned[0]
            del store.active[job.id]
            job.lease_until = None
            job.token += 1
            job.deps = owned[1].deps  # children added since the claim
            self._place(store, job)
            store.count(job.task, OUTCOME_TOTALS[job.status])
            if job.status in TERMINAL_STATES:
                if job.deps:
                    self._parent_ended(job, job.finished_at or time.time())
                self._trim(store, job.status, retention.keep)
            accepted.append(True)
        return accepted

    async def release(self, jobs: Sequence[Job], transition: Transition, now: float) -> None:
        for job in jobs:
            owned = self._owned(job)
            if owned is not None:
                self._apply(owned[0], owned[1], transition, now, None)

    async def heartbeat(self, worker: WorkerInfo, jobs: Sequence[Job], lease_until: float) -> list[str]:
        self._store(worker.queue).workers[worker.id] = copy.copy(worker)
        lost = []
        for job in jobs:
            owned = self._owned(job)
            if owned is None:
                lost.append(job.id)
            else:
                owned[1].lease_until = lease_until
        return lost

    async def remove_worker(self, worker: WorkerInfo) -> None:
        self._store(worker.queue).workers.pop(worker.id, None)

    async def save_progress(self, job: Job) -> bool:
        owned = self._owned(job)
        if owned is not None:
            owned[1].progress = job.progress
        return owned is not None

    # -- scheduling -------------------------------------------------------------------
    async def promote_due(self, queue: str, now: float, limit: int) -> tuple[int, float | None]:
        store = self._store(queue)
        heap, promoted = store.delayed, 0
        while heap and promoted < limit:
            due, _, job_id, token = heap[0]
            job = store.jobs.get(job_id)
            if job is None or job.token != token or job.status is not JobState.DELAYED:
                heapq.heappop(heap)
                continue
            if due > now:
                return promoted, due
            heapq.heappop(heap)
            job.ready_at = now
            self._move(store, job, JobState.WAITING)
            promoted += 1
        return promoted, (heap[0][0] if heap else None)

    async def wait_for_schedule(self, queue: str, timeout_s: float) -> None:
        await _wait(self._store(queue).schedule_waiters, timeout_s)

    async def recover_stalled(self, queue: str, now: float, recovery: StallRecovery) -> list[Job]:
        store = self._store(queue)
        recovered = []
        for job_id, job in list(store.active.items()):
            lease = job.lease_until
            if type(lease) in (float, int) and lease >= now:  # type: ignore[operator]
                continue
            wrong = malformed_field(job)
            if wrong is None:
                self._apply(store, job, recovery.transition_for(job.stalls), now, recovery.retention)
                recovered.append(job.clone())
                continue
            # A job changed while it ran: failed with the reason (a transition would fail part way).
            reason = malformed_reason(f"job record {job_id!r}", wrong, getattr(job, wrong))
            task = job.task if type(job.task) is str else "?"
            unreadable = UnreadableJob(job_id, queue, job.token, reason, task)
            self._fail_active(store, unreadable, job, now, recovery.retention)
            recovered.append(unreadable.failed(now))
        return recovered

    async def add_repeatable(self, repeatable: Repeatable) -> bool:
        store = self._store(repeatable.queue)
        if repeatable.key in store.repeatables:
            return False
        store.repeatables[repeatable.key] = copy.deepcopy(repeatable.to_record())
        return True

    async def remove_repeatable(self, queue: str, key: str) -> bool:
        return self._store(queue).repeatables.pop(key, None) is not None

    async def stored_repeatables(self, queue: str) -> list[tuple[str, object]]:
        return [(key, copy.deepcopy(record)) for key, record in self._peek(queue).repeatables.items()]

    async def advance_repeatable(self, queue: str, key: str, expected_at: float, next_at: float) -> bool:
        record = self._store(queue).repeatables.get(key)
        if record is not None and record["next_run_at"] == next_at:
            return True  # already there: the occurrence's id makes storing it twice store it once
        if record is None or record["next_run_at"] != expected_at:
            return False
        record["next_run_at"] = next_at
        return True

    # -- control and inspection -------------------------------------------------------
    async def set_paused(self, queue: str, paused: bool) -> None:
        store = self._store(queue)
        store.paused = paused
        if not paused:
            _wake(store.job_waiters)

    async def transition(
        self, queue: str, job_id: str, transition: Transition, now: float, retention: Retention
    ) -> Job | None:
        store = self._store(queue)
        job = store.jobs.get(job_id)
        if job is None or not transition.applies_to(job):
            return None
        self._apply(store, job, transition, now, retention)
        return job.clone()

    async def get_job(self, queue: str, job_id: str) -> Job | None:
        job = self._peek(queue).jobs.get(job_id)
        if job is None:
            return None
        wrong = malformed_field(job)
        if wrong is not None:
            raise MalformedJobError(malformed_reason(f"job record {job_id!r}", wrong, getattr(job, wrong)))
        return job.clone()

    async def list_jobs(self, queue: str, state: JobState, limit: int, offset: int = 0) -> list[Job]:
        store = self._peek(queue)
        if state is JobState.WAITING:
            ids = list(store.waiting_ids)
        elif state is JobState.ACTIVE:
            ids = list(store.active)
        elif state is JobState.DELAYED:
            ids = [job.id for job in store.jobs.values() if job.status is JobState.DELAYED]
        elif state is JobState.BLOCKED:
            ids = list(store.blocked)
        else:
            ids = list(reversed(store.finished[state]))  # newest first
        return [store.jobs[job_id].clone() for job_id in ids[offset : offset + limit]]

    async def remove_job(self, queue: str, job_id: str, retention: Retention = DEFAULT_RETENTION) -> bool:
        store = self._store(queue)
        job = store.jobs.get(job_id)
        if job is None or job.status is JobState.ACTIVE:
            return False
        self._remove(store, job)
        return True

    def _remove(self, store: _Store, job: Job) -> None:
        """Delete a job; its blocked children learn it is gone (`parent_removed`)."""
        self._unplace(store, job)
        del store.jobs[job.id]
        self._job_ended(job.queue, job.id)
        if job.deps and job.status not in TERMINAL_STATES:
            self._parent_ended(job, time.time(), removed=True)

    async def drain(
        self, queue: str, include_delayed: bool = False, retention: Retention = DEFAULT_RETENTION
    ) -> int:
        store = self._store(queue)
        pending = [
            job
            for job in store.jobs.values()
            if job.status is JobState.WAITING
            or (include_delayed and job.status is JobState.DELAYED and job.repeat_key is None)
        ]
        for job in pending:
            self._unplace(store, job)
            del store.jobs[job.id]
            self._job_ended(queue, job.id)
        store.waiting.clear()  # the delayed heap keeps its dead entries: they die by their token
        now = time.time()
        for job in pending:  # after the clear: a child freed joins the waiting line anew
            if job.deps:
                self._parent_ended(job, now, removed=True)
        return len(pending)

    def _trim(self, store: _Store, state: JobState, keep: int) -> None:
        finished = store.finished[state]
        while len(finished) > keep:
            job_id = next(iter(finished))
            del finished[job_id]
            store.jobs.pop(job_id, None)

    async def purge_finished(self, queue: str, now: float, retention: Retention) -> int:
        store = self._store(queue)
        removed = 0
        for state, finished in store.finished.items():
            expired = [job_id for job_id, at in finished.items() if at < now - retention.ttl_s]
            for job_id in expired:
                del finished[job_id]
                store.jobs.pop(job_id, None)
            removed += len(expired)
            self._trim(store, state, retention.keep)
        # Keys past their ttl, as the other backends' purge (or Redis itself) deletes them.
        store.dedup = {key: record for key, record in store.dedup.items() if not record[1] or record[1] > now}
        return removed

    async def delete_queue(self, queue: str) -> None:
        self._stores.pop(queue, None)
        for watched_queue, job_id in list(self._job_watches):
            if watched_queue == queue:
                self._job_ended(queue, job_id)

    async def watch_job(self, queue: str, job_id: str) -> JobWatch:
        key = (queue, job_id)

        def forget(watch: EventWatch) -> None:
            watches = self._job_watches.get(key)
            if watches is not None:
                watches.discard(watch)
                if not watches:
                    del self._job_watches[key]

        watch = EventWatch(forget)
        self._job_watches.setdefault(key, set()).add(watch)
        return watch

    async def stats(self, queue: str, now: float) -> QueueStats:
        store = self._peek(queue)
        counts = {
            JobState.WAITING.value: len(store.waiting_ids),
            JobState.DELAYED.value: store.delayed_count,
            JobState.ACTIVE.value: len(store.active),
            JobState.BLOCKED.value: len(store.blocked),
        }
        for state, finished in store.finished.items():
            counts[state.value] = len(finished)
        oldest = next(iter(store.waiting_ids.values()), None)
        workers, unreadable = read_workers(
            (worker_id, {name: getattr(w, name) for name in WorkerInfo.__dataclass_fields__})
            for worker_id, w in store.workers.items()
        )
        gone = {w.id for w in workers if w.expires_at < now}
        for worker_id in gone:
            del store.workers[worker_id]
        live = [w for w in workers if w.id not in gone]
        totals = {task: dict(by_name) for task, by_name in store.totals.items()}
        return QueueStats(counts, oldest, store.paused, live, unreadable, totals)

    async def queues(self) -> list[str]:
        return sorted(self._stores)
