"""The scheduler: one queue's time-driven work, beside the workers that run its jobs.

It promotes delayed jobs when they are due (a repeatable's occurrence is a delayed job, and
its promotion is what fires the schedule), stores each schedule's next occurrence, recovers
jobs whose worker vanished, purges finished jobs past their retention and repairs the
dependencies a dead process left half released (`BaseBackend.repair_dependencies`). Every
worker runs one (`Worker.run`); any number may run at once, since each step is atomic in the
backend.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from asyncmq.core.event import Event
from asyncmq.core.seam import event_emitter
from asyncmq.errors import InvalidJobError
from asyncmq.job import Job, JobState
from asyncmq.logging import get_logger
from asyncmq.transitions import stall_recovery

if TYPE_CHECKING:
    from asyncmq.queues import Queue
    from asyncmq.schedule import Repeatable

__all__ = ["Scheduler"]

log = get_logger(__name__)

_PROMOTE_BATCH = 1000
_PURGE_EVERY_S = 60.0
_REPAIR_EVERY_S = 30.0


def _earliest(first: float | None, second: float | None) -> float | None:
    if first is None or second is None:
        return first if second is None else second
    return min(first, second)


class Scheduler:
    def __init__(self, queue: Queue) -> None:
        self.queue = queue
        self.backend = queue.backend

    async def tick(self, now: float | None = None) -> float | None:
        """One full pass: promote due delayed jobs, fire due repeatables, recover stalled
        jobs. Returns when the next delayed job is due."""
        now = time.time() if now is None else now
        next_due = await self._promote_and_fire(now, check_repeatables=True)
        await self._recover_stalled(now)
        return next_due

    async def run(self) -> None:
        """Until cancelled. Promote on every pass; the rest only when due, so an idle
        scheduler costs one promote and one blocking wait per `scan_interval`. Each duty
        fails on its own and its clock moves on anyway, so one broken duty (a malformed
        schedule) neither stops the others nor spins the loop."""
        duties: dict[str, tuple[float, Callable[[float], Awaitable[None]]]] = {
            "repeat": (_REPAIR_EVERY_S, self._repair_repeatables),
            "stall": (self.queue.lease_s / 2, self._recover_stalled),
            "purge": (_PURGE_EVERY_S, self._purge),
            "dependencies": (_REPAIR_EVERY_S, self._repair_dependencies),
        }
        due = dict.fromkeys(duties, 0.0)
        while True:
            now = time.time()
            await self._duty("declared schedules", self._store_declared())
            next_due = await self._duty("promotion", self._promote_and_fire(now, now >= due["repeat"]))
            for name, (every_s, duty) in duties.items():
                if now >= due[name]:
                    due[name] = now + every_s
                    await self._duty(name, duty(now))
            wake_at = min(now + self.queue.scan_interval_s, *due.values(), next_due or math.inf)
            await self._wait(max(wake_at - time.time(), 0.001))

    async def _store_declared(self) -> None:
        """Schedules declared without await while the worker runs (its start stored those
        declared before)."""
        await self.queue.store_declared()

    async def _duty(self, name: str, work: Awaitable[float | None]) -> float | None:
        try:
            return await work
        except Exception:
            log.exception("scheduler %s for queue %r failed; retrying later", name, self.queue.name)
            return None

    async def _wait(self, timeout_s: float) -> None:
        """Sleep until a sooner job may be due. The wait is a backend call too (a blocking
        pop on Redis): if it fails, sleep instead, or the scheduler, and with it delayed
        jobs and stall recovery, would end for good with the first dropped connection."""
        try:
            await self.backend.wait_for_schedule(self.queue.name, timeout_s)
        except Exception:
            log.exception("waiting on the schedule of queue %r failed; retrying", self.queue.name)
            await asyncio.sleep(timeout_s)

    async def _promote_and_fire(self, now: float, check_repeatables: bool) -> float | None:
        promoted, next_due = await self._promote(now)
        if promoted or check_repeatables:
            next_due = _earliest(next_due, await self._fire_repeatables(now))
        return next_due

    async def _promote(self, now: float) -> tuple[int, float | None]:
        total = 0
        while True:
            promoted, next_due = await self.backend.promote_due(self.queue.name, now, _PROMOTE_BATCH)
            total += promoted
            if promoted < _PROMOTE_BATCH:
                return total, next_due

    async def _fire_repeatables(self, now: float) -> float | None:
        """Store the next occurrence of each schedule whose pending one is now due; return
        the earliest stored. The compare-and-set on `next_run_at` lets exactly one
        scheduler store it. A schedule that cannot make its occurrence is skipped, never
        stopping the others."""
        earliest = None
        for rep in await self.backend.repeatables(self.queue.name):
            if rep.next_run_at > now:
                continue
            following = rep.next_after(max(now, rep.next_run_at))
            if await self.backend.advance_repeatable(self.queue.name, rep.key, rep.next_run_at, following):
                occurrence = self._occurrence(rep, following)
                if occurrence is not None:
                    await self.queue.store([occurrence])
                    earliest = _earliest(earliest, following)
        return earliest

    async def _repair_repeatables(self, now: float) -> None:
        """Re-store a pending occurrence that vanished (a crash between the compare-and-set
        and the store, or a drain); its id makes this a no-op when it exists."""
        pending = [
            self._occurrence(rep, rep.next_run_at)
            for rep in await self.backend.repeatables(self.queue.name)
            if rep.next_run_at > now
        ]
        occurrences = [job for job in pending if job is not None]
        if occurrences:
            await self.queue.store(occurrences)

    def _occurrence(self, rep: Repeatable, at: float) -> Job | None:
        """The occurrence at `at`, or `None` (logged) when the job it makes is refused: read
        schedules are checked, but a setting (`max_payload_bytes`) may have changed since."""
        try:
            return self.queue.occurrence(rep, at)
        except InvalidJobError as exc:
            log.error(
                "schedule %r of queue %r cannot make its job, skipped: %s", rep.key, self.queue.name, exc
            )
            return None

    async def _recover_stalled(self, now: float) -> None:
        recovery = stall_recovery(self.queue.max_stalls, self.queue.retention)
        for job in await self.backend.recover_stalled(self.queue.name, now, recovery):
            log.warning("job %s of %s stalled (its worker vanished); recovered", job.id, job.queue)
            event_emitter.emit_job(Event.JOB_STALLED, job)
            if job.status is JobState.FAILED:
                event_emitter.emit_job(Event.JOB_FAILED, job)

    async def _repair_dependencies(self, now: float) -> None:
        await self.backend.repair_dependencies(self.queue.name, now)

    async def _purge(self, now: float) -> None:
        await self.backend.purge_finished(self.queue.name, now, self.queue.retention)
