"""Waiting for a job's result: `Queue.result`, and the id `Queue.add` returns (`JobId`).

A waiter reads the job, and while it has not ended waits on the backend's wake-up for that
job (`BaseBackend.watch_job`), started before that first read so that an end coming between
the read and the wait is not missed. A backend without wake-ups, or a wake-up lost on the
way (a dropped connection), costs latency, never an answer: each wait also ends after a slow
poll interval, doubling from `_FIRST_POLL_S` to `_MAX_POLL_S`, and the job is read again.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from asyncmq.errors import (
    JobCancelledError,
    JobExpiredError,
    JobFailedError,
    JobGoneError,
    JobNotFoundError,
)
from asyncmq.job import TERMINAL_STATES, Job, JobState
from asyncmq.limits import seconds

if TYPE_CHECKING:
    from asyncmq.queues import Queue

__all__ = ["JobId", "outcome", "wait_for_result"]

_FIRST_POLL_S = 0.05
_MAX_POLL_S = 1.0


class JobId(str):
    """A job's id as `Queue.add` and `Task.enqueue` return it: the plain id string in every
    use (compared, hashed, printed, JSON-encoded, pickled as one), that also knows its queue,
    so `await job_id.result(timeout=5)` needs nothing else."""

    queue: Queue

    def __new__(cls, job_id: str, queue: Queue) -> JobId:
        made = str.__new__(cls, job_id)  # not super(): one lookup less, for every add
        made.queue = queue
        return made

    def __reduce__(self) -> tuple[type[str], tuple[str]]:
        """Pickled (and copied) as the plain string: the queue's backend holds connections."""
        return str, (str(self),)

    async def result(self, timeout: float | timedelta | None = None) -> Any:
        """The job's result once it has completed: see `Queue.result`."""
        return await wait_for_result(self.queue, str(self), timeout, added=True)


def outcome(job: Job) -> Any:
    """The result of an ended job, or the error that says why it has none."""
    if job.status is JobState.COMPLETED:
        return job.result
    where = f"job {job.id} of queue {job.queue!r}"
    if job.status is JobState.FAILED:
        error = job.error or {}
        raise JobFailedError(
            job_id=job.id,
            queue=job.queue,
            error_type=str(error.get("type", "UnknownError")),
            error_message=str(error.get("message", "")),
            traceback=error.get("traceback"),
        )
    if job.status is JobState.EXPIRED:
        ttl = f" of {job.ttl_s:g}s" if job.ttl_s is not None else ""
        message = f"{where} expired: it was not started within its ttl{ttl}, so it never ran"
        raise JobExpiredError(message, job_id=job.id, queue=job.queue, state=job.status.value)
    message = f"{where} was cancelled: it has no result"
    raise JobCancelledError(message, job_id=job.id, queue=job.queue, state=job.status.value)


async def wait_for_result(
    queue: Queue, job_id: str, timeout: float | timedelta | None, *, added: bool = False
) -> Any:
    """See `Queue.result`. `added`: the caller added this job (a `JobId`), so a job not found
    was deleted (by its retention, most likely), not never added."""
    timeout_s = None if timeout is None else seconds(timeout, "timeout")
    seen: list[JobState] = []  # the last status read, for the timeout's message
    try:
        async with asyncio.timeout(timeout_s) as deadline:
            return await _wait(queue, job_id, seen, added)
    except TimeoutError:
        if not deadline.expired():
            raise
        state = seen[-1].value if seen else "not read yet"
        raise TimeoutError(
            f"job {job_id} of queue {queue.name!r} has not ended after {timeout_s:g}s: it is {state}"
        ) from None


async def _wait(queue: Queue, job_id: str, seen: list[JobState], added: bool) -> Any:
    backend = queue.backend
    watch = await backend.watch_job(queue.name, job_id)
    try:
        poll_s = _FIRST_POLL_S
        while True:
            job = await backend.get_job(queue.name, job_id)
            if job is None:
                raise _not_found(queue.name, job_id, bool(seen) or added)
            seen.append(job.status)
            del seen[:-1]
            if job.status in TERMINAL_STATES:
                return outcome(job)
            await watch.wait(poll_s)
            poll_s = min(poll_s * 2, _MAX_POLL_S)
    finally:
        await asyncio.shield(watch.close())


def _not_found(queue: str, job_id: str, existed: bool) -> JobNotFoundError:
    if not existed:
        return JobNotFoundError(f"no job {job_id!r} in queue {queue!r}")
    return JobGoneError(
        f"job {job_id} of queue {queue!r} is gone: it was removed (remove_job, drain, the queue "
        "deleted) or it ended longer ago than the queue keeps finished jobs (result_ttl, "
        "keep_finished), which deleted its result",
        job_id=job_id,
        queue=queue,
        state=None,
    )
