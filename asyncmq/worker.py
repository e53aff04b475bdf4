"""The worker: claims jobs in batches, runs each in one of `concurrency` slots, and stores
outcomes in batches.

One job's path is `_execute`: start, run, and an outcome (complete, retry or fail). Around
it, a few small loops: slots pull from a prefetch buffer that one claimer at a time refills;
a flusher stores outcomes in batches; a heartbeat keeps leases alive and learns of jobs
taken away; and the queue's `Scheduler` runs beside them.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
import math
import os
import signal
import socket
import time
import traceback
import uuid
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from asyncmq import limits
from asyncmq.backends.base import UnreadableJob, WorkerInfo
from asyncmq.backoff import Backoff
from asyncmq.conf import settings
from asyncmq.context import JobContext, _current
from asyncmq.core.event import Event
from asyncmq.core.seam import event_emitter, hooks
from asyncmq.errors import InvalidJobError, JobTimeoutError, NonRetryableError, ResultSerializationError
from asyncmq.job import Job, JobState, check_storable
from asyncmq.logging import get_logger
from asyncmq.registry import get_task
from asyncmq.scheduler import Scheduler
from asyncmq.transitions import RELEASE

if TYPE_CHECKING:
    from asyncmq.queues import Queue
    from asyncmq.tasks import Task

__all__ = ["Worker"]

log = get_logger(__name__)

_SETTLED_EVENTS = {
    JobState.COMPLETED: Event.JOB_COMPLETED,
    JobState.FAILED: Event.JOB_FAILED,
    JobState.EXPIRED: Event.JOB_EXPIRED,
    JobState.WAITING: Event.JOB_RETRIED,
    JobState.DELAYED: Event.JOB_RETRIED,
}
_IDLE_WAIT_S = 5.0  # a safety net: new jobs wake idle workers through the backend
_SMOOTHING = 0.2  # weight of the newest sample in the claim and attempt time averages
_NAMED_JOBS = 5  # ids a log line names before "and N more"


def _averaged(average: float | None, sample: float) -> float:
    return sample if average is None else average + _SMOOTHING * (sample - average)


def _error_record(exc: BaseException) -> dict[str, str]:
    """What a failed attempt stores. A NUL character is written `\\x00`: PostgreSQL refuses it,
    and an outcome that cannot be stored would hold back every outcome after it."""
    return {
        "type": type(exc).__name__,
        "message": str(exc).replace("\x00", "\\x00"),
        "traceback": "".join(traceback.format_exception(exc)).replace("\x00", "\\x00"),
    }


def _slots(value: object, what: str) -> int | None:
    return None if value is None else limits.integer(value, what, 1, limits.MAX_CONCURRENCY)


class Worker:
    """Runs one queue's jobs until stopped (`stop()`, SIGTERM/SIGINT) or, in burst mode,
    until nothing is left to run."""

    def __init__(
        self,
        queue: Queue,
        *,
        concurrency: int | None = None,
        burst: bool = False,
        shutdown_grace: float | timedelta | None = None,
        claim_batch: int | None = None,
        handle_signals: bool = True,
    ) -> None:
        """`concurrency` (default the queue's), `claim_batch` (default `claim_batch_size`) and
        `shutdown_grace` (seconds or a `timedelta`; default `shutdown_grace_seconds`) are checked
        here: a bad one raises an `InvalidJobError` (a `ValueError`) naming it."""
        try:
            concurrency = _slots(concurrency, "concurrency")
            claim_batch = _slots(claim_batch, "claim_batch")
            grace_s = limits.seconds(shutdown_grace, "shutdown_grace")
        except InvalidJobError as exc:
            raise type(exc)(f"worker of queue {queue.name!r}: {exc}") from None
        self.queue = queue
        self.backend = queue.backend
        self.concurrency = concurrency or queue.concurrency
        self.burst = burst
        self.shutdown_grace_s = grace_s if grace_s is not None else settings.shutdown_grace_seconds
        self.claim_batch = claim_batch or settings.claim_batch_size
        self.handle_signals = handle_signals
        self.scheduler = Scheduler(queue)
        self.id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.processed = 0
        self._buffer: deque[Job] = deque()
        self._running: dict[str, tuple[Job, asyncio.Task[Any] | None]] = {}
        self._lost: dict[str, str] = {}  # running job taken from us -> why, said in the log
        self._interrupted: list[Job] = []
        self._outcomes: list[Job] = []
        self._unstored_outcomes = 0  # outcomes not stored yet: queued or in a flush
        self._backend_errors = 0  # consecutive failed claims, for backoff
        self._claim_s: float | None = None  # average claim round trip
        self._attempt_s: float | None = None  # average time a slot spends on one job
        self._stopping = False
        self._closing = False
        self._stopped: asyncio.Event | None = None
        self._outcome_ready: asyncio.Event | None = None
        self._claim_lock: asyncio.Lock | None = None
        self._outcomes_stored: asyncio.Event | None = None
        self._idle_wait: asyncio.Task[None] | None = None
        self._grace_cut: asyncio.Event | None = None
        self._awaiting_jobs = False
        self._executor: ThreadPoolExecutor | None = None
        self._started_at = time.time()

    # -- public -------------------------------------------------------------------------
    def stop(self, *, grace: bool = True) -> None:
        """Stop claiming; running attempts get `shutdown_grace` seconds to finish. With
        `grace=False` (a second signal) they are interrupted now and handed back, even when
        the worker is already waiting out its grace."""
        self._stopping = True
        if not grace:
            self.shutdown_grace_s = 0
            if self._grace_cut is not None:
                self._grace_cut.set()
        if self._idle_wait is not None:
            self._idle_wait.cancel()
        if self._stopped is not None:
            self._stopped.set()

    async def process(self) -> bool:
        """Claim one job, run it and store its outcome; `False` if none was ready. A job whose
        record cannot be read is failed on the claim's way, and counts as the one."""
        if self._prefetched_unconfirmed():
            await self._confirm_prefetched()
        if not self._buffer:
            processed = self.processed
            await self._claim(1)
            if not self._buffer:
                return self.processed > processed
        await self._execute(self._buffer.popleft())
        await self._flush()
        return True

    async def run(self) -> None:
        self.backend.size_for(self.concurrency)
        await self.backend.connect()
        await self.queue.store_declared()  # schedules declared without await, stored before the start
        self._stopped = asyncio.Event()
        self._outcome_ready = asyncio.Event()
        self._claim_lock = asyncio.Lock()
        self._outcomes_stored = asyncio.Event()
        self._grace_cut = asyncio.Event()
        if self._stopping:  # stop() came before run(): honour it
            self._stopped.set()
        loop = asyncio.get_running_loop()
        handled = self._install_signals(loop) if self.handle_signals else []
        await self._heartbeat_once()
        self._emit_worker(Event.WORKER_STARTED)
        slots = [loop.create_task(self._slot(), name=f"asyncmq-slot-{i}") for i in range(self.concurrency)]
        flusher = loop.create_task(self._flush_loop(), name="asyncmq-flusher")
        helpers = [
            loop.create_task(self.scheduler.run(), name="asyncmq-scheduler"),
            loop.create_task(self._heartbeat_loop(), name="asyncmq-heartbeat"),
        ]
        try:
            await self._stopped.wait()
        finally:
            await self._shutdown(slots, flusher, helpers)
            for sig in handled:
                loop.remove_signal_handler(sig)

    # -- one job ------------------------------------------------------------------------
    async def _execute(self, job: Job) -> None:
        """One attempt: start, run, settle. The only path a job takes through a worker."""
        now = time.time()
        if job.is_expired(now):
            job.status, job.finished_at = JobState.EXPIRED, now
            self._add_outcome(job)
            return
        job.started_at, job.finished_at = now, None
        started = time.perf_counter()
        event_emitter.emit_job(Event.JOB_STARTED, job)
        self._running[job.id] = (job, asyncio.current_task())
        ctx_token = _current.set(JobContext(job, self.backend))
        hook = hooks.active
        try:  # a hook that breaks its promise to guard itself fails the job, not the worker
            state = hook.before_attempt(job) if hook is not None else None
            try:
                job.result = await self._call(job)
            except BaseException as exc:
                if hook is not None:
                    hook.after_attempt(job, state, exc)
                raise
            if hook is not None:
                hook.after_attempt(job, state, None)
            job.status = JobState.COMPLETED
        except asyncio.CancelledError as exc:
            if not self._attempt_failed_on(job, exc):
                return
        except Exception as exc:
            self._retry_or_fail(job, exc)
        finally:
            _current.reset(ctx_token)
            if self._running.get(job.id, (None, None))[0] is job:  # a later claim may run it now
                del self._running[job.id]
            self._attempt_s = _averaged(self._attempt_s, time.perf_counter() - started)
        job.finished_at = time.time()
        self._add_outcome(job)

    def _attempt_failed_on(self, job: Job, exc: asyncio.CancelledError) -> bool:
        """Tell a cancellation's three causes apart. The task raised it itself: the attempt
        failed (True). The job was taken from us (cancel, lost lease): drop the attempt and
        keep the slot (False). The worker is stopping: re-raise, the job will be handed back."""
        current = asyncio.current_task()
        if current is None or not current.cancelling():
            self._retry_or_fail(job, exc)
            return True
        event_emitter.emit_job(Event.JOB_ABANDONED, job)
        if job.id in self._lost:
            why = self._lost.pop(job.id)
            current.uncancel()
            log.warning("job %s of queue %r %s; its attempt was stopped", job.id, job.queue, why)
            return False
        self._interrupted.append(job)
        raise exc

    async def _call(self, job: Job) -> Any:
        task = get_task(job.task)
        call = task.fn(*job.args, **job.kwargs) if task.is_async else self._in_thread(task, job)
        if job.timeout_s is None:
            result = await call
        else:
            scope = asyncio.timeout(job.timeout_s)
            try:
                async with scope:
                    result = await call
            except TimeoutError:
                if not scope.expired():
                    raise  # the task's own TimeoutError: an ordinary, retryable failure
                message = f"attempt {job.attempt} exceeded the timeout of {job.timeout_s}s"
                raise JobTimeoutError(message) from None
        what = f"task {job.task!r} returned a {type(result).__name__} that"
        check_storable(result, what, "result", ResultSerializationError)
        return result

    def _in_thread(self, task: Task[Any, Any], job: Job) -> asyncio.Future[Any]:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self.concurrency, thread_name_prefix="asyncmq-task")
        call = functools.partial(task.fn, *job.args, **job.kwargs)
        ctx = contextvars.copy_context()
        return asyncio.get_running_loop().run_in_executor(self._executor, ctx.run, call)

    def _retry_or_fail(self, job: Job, exc: BaseException) -> None:
        job.error = _error_record(exc)
        now = time.time()
        if isinstance(exc, NonRetryableError) or job.attempt > job.max_retries:
            job.status = JobState.FAILED
            log.warning("job %s (%s) failed for good: %s: %s", job.id, job.task, type(exc).__name__, exc)
            return
        backoff = Backoff.from_spec(job.backoff)
        delay = backoff.delay_for(job.attempt) if backoff is not None else 0.0
        if delay > 0:
            job.status, job.delay_until, job.ready_at = JobState.DELAYED, now + delay, None
        else:
            job.status, job.ready_at, job.delay_until = JobState.WAITING, now, None

    # -- outcomes, stored in batches ----------------------------------------------------
    def _add_outcome(self, job: Job) -> None:
        self._outcomes.append(job)
        self._unstored_outcomes += 1
        if self._outcome_ready is not None:
            self._outcome_ready.set()

    async def _flush_loop(self) -> None:
        assert self._outcome_ready is not None
        while not self._closing:
            await self._outcome_ready.wait()
            self._outcome_ready.clear()
            await self._flush()
            if self.burst and self._awaiting_jobs and not self._running and self._idle_wait is not None:
                # Its own outcomes kept a burst worker from stopping; now they are stored, it
                # looks again at once instead of waiting out the idle timeout.
                self._idle_wait.cancel()

    async def _flush(self) -> None:
        while self._outcomes:
            batch, self._outcomes = self._outcomes, []
            try:
                accepted = await self.backend.finish(batch, self.queue.retention)
            except Exception:
                # The jobs stay active in the store; retry, and if this worker dies their
                # leases run out and they are recovered: nothing is lost either way.
                log.exception("storing %d outcomes failed; retrying", len(batch))
                self._outcomes[:0] = batch
                await asyncio.sleep(0.5)
                continue
            self.processed += len(batch)
            self._unstored_outcomes -= len(batch)
            if self._outcomes_stored is not None:
                self._outcomes_stored.set()
            settled: dict[Event, list[Job]] = {}
            for job, ok in zip(batch, accepted, strict=True):
                if ok:
                    settled.setdefault(_SETTLED_EVENTS[job.status], []).append(job)
                else:
                    log.warning("discarded the outcome of job %s: another owner has it now", job.id)
                    event_emitter.emit_job(Event.JOB_ABANDONED, job)
            self._emit_settled(settled)

    @staticmethod
    def _emit_settled(settled: dict[Event, list[Job]]) -> None:
        """One event per outcome kind for the whole stored batch (metrics count it at once)."""
        for event, jobs in settled.items():
            event_emitter.emit_jobs(event, jobs)
        backing_off = [job for job in settled.get(Event.JOB_RETRIED, ()) if job.status is JobState.DELAYED]
        # Stored again for later, not a new job: counters tell the two apart by `reason`.
        event_emitter.emit_jobs(Event.JOB_DELAYED, backing_off, reason="retry")

    # -- claiming -----------------------------------------------------------------------
    @property
    def held_at_most(self) -> int:
        """The most jobs this worker holds at once: running, prefetched, or finished with the
        outcome not yet stored. Those are the jobs a fault (this worker killed or frozen, its
        outcomes lost) can make run twice, so the cap bounds the duplicates of one fault."""
        return self.concurrency + 2 * self.claim_batch

    def _held(self) -> int:
        return len(self._running) + len(self._buffer) + self._unstored_outcomes

    async def _slot(self) -> None:
        assert self._claim_lock is not None
        while not self._stopping:
            if not self._buffer:
                async with self._claim_lock:
                    if not self._buffer and not self._stopping:
                        await self._refill()
            if self._prefetched_unconfirmed() and not self._stopping:
                await self._confirm_prefetched()
            if self._buffer and not self._stopping:
                await self._execute(self._buffer.popleft())

    async def _claim(self, limit: int) -> bool:
        """Claim up to `limit` jobs into the buffer. True when it is worth claiming again at
        once: jobs came, or the rate limit held some back (and its wait is already over)."""
        now = time.time()
        started = time.perf_counter()
        result = await self.backend.claim(
            self.queue.name, self.id, limit, self.queue.lease_s, now, self.queue.rate
        )
        self._claim_s = _averaged(self._claim_s, time.perf_counter() - started)
        self._buffer.extend(result.jobs)
        if result.unreadable:
            await self._fail_unreadable(result.unreadable)
        if result.rate_limited_for_s is not None:
            event_emitter.emit(
                Event.QUEUE_RATE_LIMITED,
                {"queue": self.queue.name, "held_back": limit, "wait_s": result.rate_limited_for_s},
            )
            await self._idle(asyncio.sleep(result.rate_limited_for_s))
            return True
        return bool(result.jobs or result.unreadable)

    async def _fail_unreadable(self, unreadable: list[UnreadableJob]) -> None:
        """A job whose stored record makes no valid job can never run: it fails at once with
        the reason, its record kept for inspection, and `job:failed` lets metrics count it.
        Should storing that fail, the job stays active and comes back after its lease."""
        for job in unreadable:
            log.error("job %s of queue %r cannot be read and fails: %s", job.id, job.queue, job.reason)
        now = time.time()
        failed = await self.backend.fail_unreadable(unreadable, now, self.queue.retention)
        settled = [job.failed(now) for job, ok in zip(unreadable, failed, strict=True) if ok]
        self.processed += len(settled)
        event_emitter.emit_jobs(Event.JOB_FAILED, settled)

    async def _refill(self) -> None:
        """Claim as many jobs as there are idle slots, or wait until some may be ready. A
        backend error (a dropped connection, a restarting server) is waited out, never fatal."""
        try:
            if self._held() >= self.held_at_most:
                await self._wait_for_outcomes_stored()
                return
            if await self._claim(self._wanted()) or self._stopping:
                return
            if self.burst and await self._nothing_left():
                self.stop()
                return
            self._awaiting_jobs = True
            await self._idle(self.backend.wait_for_jobs(self.queue.name, _IDLE_WAIT_S))
        except Exception:
            self._backend_errors += 1
            delay = min(0.05 * 2 ** min(self._backend_errors, 6), 2.0)
            log.exception("claiming from queue %r failed; retrying in %.2fs", self.queue.name, delay)
            await self._idle(asyncio.sleep(delay))
        else:
            self._backend_errors = 0
        finally:
            self._awaiting_jobs = False

    def _wanted(self) -> int:
        """A job for each idle slot, plus the jobs the slots will get through while the next
        claim is on its way (Little's law: their rate times the round trip). Short jobs then
        come in batches of `claim_batch`, and long ones are not held back from other workers.
        Until both times are known, a job ahead for each slot."""
        if self._claim_s is None or self._attempt_s is None:
            ahead = self.concurrency
        else:
            ahead = math.ceil(self.concurrency * self._claim_s / max(self._attempt_s, 1e-6))
        wanted = self.concurrency - len(self._running) + ahead - len(self._buffer)
        return max(1, min(wanted, self.claim_batch, self.held_at_most - self._held()))

    async def _wait_for_outcomes_stored(self) -> None:
        """At the cap (outcomes are not getting through): claim again once some are stored."""
        assert self._outcomes_stored is not None
        self._outcomes_stored.clear()
        await self._idle(self._outcomes_stored.wait())

    async def _idle(self, waiting: Any) -> None:
        """Wait in a task that `stop()` can cancel, so an idle worker stops at once."""
        self._idle_wait = asyncio.ensure_future(waiting)
        try:
            await self._idle_wait
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is None or not current.cancelling():
                return
            raise
        finally:
            self._idle_wait = None

    async def _nothing_left(self) -> bool:
        if self._running or self._unstored_outcomes or self._buffer:
            return False
        counts = (await self.queue.stats()).counts
        if counts["waiting"]:
            return False
        # Each repeatable always has one pending occurrence; those do not keep a burst going.
        return not counts["delayed"] or counts["delayed"] <= len(
            await self.backend.repeatables(self.queue.name)
        )

    # -- liveness -----------------------------------------------------------------------
    def _info(self, now: float) -> WorkerInfo:
        return WorkerInfo(
            id=self.id,
            queue=self.queue.name,
            host=socket.gethostname(),
            pid=os.getpid(),
            concurrency=self.concurrency,
            started_at=self._started_at,
            heartbeat_at=now,
            expires_at=now + self.queue.lease_s,
            running=len(self._running),
        )

    def _prefetched_unconfirmed(self) -> bool:
        """Whether the next prefetched job's lease was last renewed more than half a lease ago.
        Heartbeats renew it every third of a lease, so this holds only after a freeze (a
        stopped process, a blocked event loop): another worker may have recovered and run the
        job since, and the next heartbeat may come too late to stop a short one running twice."""
        if not self._buffer:
            return False
        renewed_until = self._buffer[0].lease_until or 0.0
        return time.time() >= renewed_until - self.queue.lease_s / 2

    async def _confirm_prefetched(self) -> None:
        """Ask the backend which prefetched jobs are still ours (a heartbeat, which renews
        them), dropping the others, before starting the next one."""
        try:
            await self._heartbeat_once()
        except Exception:  # unconfirmed, it runs: its outcome is still fenced by its token
            log.exception("confirming the prefetched jobs of worker %s failed", self.id)

    async def _heartbeat_once(self) -> None:
        now = time.time()
        held = [job for job, _ in self._running.values()] + list(self._buffer)
        lease_until = now + self.queue.lease_s
        lost = set(await self.backend.heartbeat(self._info(now), held, lease_until))
        for job in held:
            if job.id not in lost:
                job.lease_until = lease_until
        if lost:
            self._drop_prefetched(lost)  # before any await below: a slot could start one
        for job_id in lost:
            if job_id not in self._running:
                continue
            why = await self._why_lost(job_id)
            _, slot = self._running.get(job_id, (None, None))  # looked up again: it may have ended
            if slot is not None:
                self._lost[job_id] = why
                slot.cancel()

    async def _why_lost(self, job_id: str) -> str:
        """Why a running job is no longer ours, as the log says it: an operator who cancelled
        a job looks for "cancelled", and a lease lost to a freeze is a different story."""
        try:
            stored = await self.backend.get_job(self.queue.name, job_id)
        except Exception:  # the record is unreadable or the backend is away: say what is sure
            return "was taken from this worker"
        if stored is None:
            return "was removed"
        if stored.status is JobState.CANCELLED:
            return "was cancelled"
        return "was taken from this worker (its lease ran out and another worker recovered it)"

    def _drop_prefetched(self, lost: set[str]) -> None:
        """Forget prefetched jobs taken from this worker (recovered after its lease ran out,
        or cancelled) before they started."""
        kept: deque[Job] = deque()
        for job in self._buffer:
            if job.id not in lost:
                kept.append(job)
                continue
            log.warning("prefetched job %s of %s was taken before it began", job.id, job.queue)
            event_emitter.emit_job(Event.JOB_ABANDONED, job)
        self._buffer = kept

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.queue.lease_s / 3)
            try:
                await self._heartbeat_once()
                self._emit_worker(Event.WORKER_HEARTBEAT)
            except Exception:
                log.exception("heartbeat of worker %s failed; retrying", self.id)

    def _emit_worker(self, event: Event) -> None:
        if event_emitter.has_listeners(event):
            info = self._info(time.time())
            event_emitter.emit(
                event,
                {
                    "worker_id": info.id,
                    "queue": info.queue,
                    "host": info.host,
                    "pid": info.pid,
                    "concurrency": info.concurrency,
                    "running": info.running,
                    "processed": self.processed,
                    "at": info.heartbeat_at,
                },
            )

    # -- stopping -----------------------------------------------------------------------
    def _install_signals(self, loop: asyncio.AbstractEventLoop) -> list[signal.Signals]:
        handled = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, self._on_signal, sig)
            except (NotImplementedError, RuntimeError, ValueError):
                continue  # not the main thread, or no signal support: the caller stops us
            handled.append(sig)
        return handled

    def _on_signal(self, sig: signal.Signals) -> None:
        if self._stopping:
            log.warning("second %s: stopping now, handing running jobs back", sig.name)
            self.stop(grace=False)
            return
        log.info("%s: finishing running jobs (up to %ss), then stopping", sig.name, self.shutdown_grace_s)
        self.stop()

    async def _wait_for_slots(self, busy: set[asyncio.Task[None]]) -> set[asyncio.Task[None]]:
        """Let running attempts finish until the grace ends or `stop(grace=False)` cuts it."""
        assert self._grace_cut is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.shutdown_grace_s
        cut = loop.create_task(self._grace_cut.wait())
        try:
            while busy and not cut.done() and loop.time() < deadline:
                left = deadline - loop.time()
                await asyncio.wait({*busy, cut}, timeout=left, return_when=asyncio.FIRST_COMPLETED)
                busy = {slot for slot in busy if not slot.done()}
        finally:
            cut.cancel()
        return busy

    async def _shutdown(
        self,
        slots: list[asyncio.Task[None]],
        flusher: asyncio.Task[None],
        helpers: list[asyncio.Task[None]],
    ) -> None:
        """Order matters: stop claiming, hand back what never started, let running attempts
        finish while heartbeats keep their leases, hand back the rest, store outcomes last.
        The flusher is asked to finish, never cancelled: a batch cut off mid-store would
        only come back after its leases ran out. A backend failing on the way out costs at
        most those leases; it never leaves this worker's tasks running."""
        self.stop()
        try:
            handed_back = await self._hand_back(self._buffer)
            busy = {slot for slot in slots if not slot.done()}
            if busy:
                self._log_stopping()
                pending = await self._wait_for_slots(busy)
                for slot in pending:
                    slot.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
            handed_back += await self._hand_back(self._buffer)  # a claim in flight at stop()
            interrupted = await self._hand_back(self._interrupted)
            self._log_handed_back(handed_back + interrupted, interrupted=bool(interrupted))
            self._closing = True
            assert self._outcome_ready is not None
            self._outcome_ready.set()
            # Bounded: a backend that stays down must not hold the exit; those outcomes'
            # jobs are recovered after their leases (at least once, never lost).
            await asyncio.wait({flusher}, timeout=max(self.shutdown_grace_s, 5.0))
        finally:
            for task in [*slots, flusher, *helpers]:
                task.cancel()
            await asyncio.gather(*slots, flusher, *helpers, return_exceptions=True)
            if self._executor is not None:
                self._executor.shutdown(wait=False, cancel_futures=True)
            with contextlib.suppress(Exception):
                await self.backend.remove_worker(self._info(time.time()))
            self._emit_worker(Event.WORKER_STOPPED)

    async def _hand_back(self, jobs: deque[Job] | list[Job]) -> list[str]:
        """Release `jobs` to the queue; the ids handed back (none when the backend failed)."""
        if not jobs:
            return []
        ids = [job.id for job in jobs]
        try:
            await self.backend.release(list(jobs), RELEASE, time.time())
        except Exception:  # their leases run out and they are recovered: late, not lost
            log.exception("handing %d jobs back to queue %r failed", len(jobs), self.queue.name)
            ids = []
        jobs.clear()
        return ids

    def _log_stopping(self) -> None:
        """Said when a shutdown has jobs to wait for, so the grace is not spent in silence."""
        running = len(self._running)
        jobs = f"{running} job{'' if running == 1 else 's'} running"
        them = "it" if running == 1 else "them"
        if self.shutdown_grace_s > 0:
            wait = f"waiting up to {self.shutdown_grace_s:g} s for {them} (shutdown grace)"
        else:
            wait = f"handing {them} back now"
        log.info("worker %s of queue %r stopping: %s, %s", self.id, self.queue.name, jobs, wait)

    def _log_handed_back(self, ids: list[str], *, interrupted: bool) -> None:
        """Name the jobs that go back to the queue to run again: an operator checking that a
        job was not lost, or why it ran twice, looks for its id here. A long list is cut."""
        if not ids:
            return
        ids = sorted(ids)
        shown = ", ".join(ids[:_NAMED_JOBS])
        if len(ids) > _NAMED_JOBS:
            shown += f" and {len(ids) - _NAMED_JOBS} more"
        count = f"{len(ids)} job{'' if len(ids) == 1 else 's'}"
        log.log(
            logging.WARNING if interrupted else logging.INFO,  # interrupted ones ran in part
            "worker %s of queue %r handed %s back to the queue, to run again: %s",
            self.id,
            self.queue.name,
            count,
            shown,
        )
