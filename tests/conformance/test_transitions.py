"""Every control transition, pinned on every backend: the stored job after it is exactly what
`asyncmq.transitions` says (`Transition.apply` on the job before), and a finished job is kept
by the queue's own retention, never a global one."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import pytest

from asyncmq import Job, JobState, Queue
from asyncmq.backends.base import BaseBackend
from asyncmq.conf import configure
from asyncmq.conf.global_settings import Settings
from asyncmq.transitions import CANCEL, RELEASE, RETRY, Transition, stall_recovery
from tests.conformance.support import always_fail, counts, noop

NOOP = noop.name


def _after(before: Job, transition: Transition, now: float) -> Job:
    expected = before.clone()
    transition.apply(expected, now)
    return expected


async def _claimed(queue: Queue, lease_s: float = 30.0) -> Job:
    claimed = await queue.backend.claim(queue.name, "w1", 1, lease_s, time.time(), None)
    (job,) = claimed.jobs
    return job


async def _failed(queue: Queue) -> str:
    job_id = await queue.add(always_fail.name)
    assert await queue.worker().process() is True
    return job_id


async def _expired(queue: Queue) -> str:
    job = queue.build_job(NOOP, ttl=1, now=time.time() - 10)
    await queue.store([job])
    assert await queue.worker().process() is True
    return job.id


async def _cancelled(queue: Queue) -> str:
    job_id = await queue.add(NOOP)
    assert await queue.cancel(job_id) is True
    return job_id


async def _apply(queue: Queue, job_id: str, transition: Transition) -> tuple[Job, Job]:
    """Apply `transition` through the backend; return (expected, stored)."""
    before = await queue.get_job(job_id)
    now = time.time()
    returned = await queue.backend.transition(queue.name, job_id, transition, now, queue.retention)
    stored = await queue.get_job(job_id)
    assert returned == stored
    return _after(before, transition, now), stored


@pytest.mark.parametrize("state", ["waiting", "delayed", "active"])
async def test_cancel_of_a_waiting_delayed_or_active_job_is_the_cancel_transition(
    queue: Queue, state: str
) -> None:
    job_id = await queue.add(NOOP, delay=60 if state == "delayed" else None)
    if state == "active":
        await _claimed(queue)

    expected, stored = await _apply(queue, job_id, CANCEL)

    assert stored == expected
    assert (stored.status, stored.worker_id, stored.lease_until) == (JobState.CANCELLED, None, None)
    assert await queue.counts() == counts(cancelled=1)


@pytest.mark.parametrize("make", [_failed, _expired, _cancelled], ids=["failed", "expired", "cancelled"])
async def test_retry_of_a_failed_expired_or_cancelled_job_is_the_retry_transition(
    queue: Queue, make: Callable[[Queue], Awaitable[str]]
) -> None:
    job_id = await make(queue)

    expected, stored = await _apply(queue, job_id, RETRY)

    assert stored == expected
    assert (stored.status, stored.attempt, stored.error, stored.finished_at) == (
        JobState.WAITING,
        0,
        None,
        None,
    )
    assert await queue.counts() == counts(waiting=1)
    assert await queue.worker().process() is True  # and it runs again


async def test_a_transition_from_a_state_it_does_not_start_from_changes_nothing(queue: Queue) -> None:
    done = await queue.add(NOOP)
    assert await queue.worker().process() is True
    waiting = await queue.add(NOOP)
    before = [await queue.get_job(done), await queue.get_job(waiting)]

    now = time.time()
    assert await queue.backend.transition(queue.name, done, CANCEL, now, queue.retention) is None
    assert await queue.backend.transition(queue.name, done, RETRY, now, queue.retention) is None
    assert await queue.backend.transition(queue.name, waiting, RETRY, now, queue.retention) is None
    assert await queue.backend.transition(queue.name, "missing", CANCEL, now, queue.retention) is None

    assert [await queue.get_job(done), await queue.get_job(waiting)] == before


async def test_release_hands_a_claimed_job_back_as_the_release_transition(queue: Queue) -> None:
    job_id = await queue.add(NOOP)
    claimed = await _claimed(queue)
    before = await queue.get_job(job_id)
    now = time.time()

    await queue.backend.release([claimed], RELEASE, now)

    stored = await queue.get_job(job_id)
    assert stored == _after(before, RELEASE, now)
    assert (stored.status, stored.attempt, stored.started_at) == (JobState.WAITING, 0, None)
    assert await queue.backend.release([claimed], RELEASE, now) is None  # stale token: nothing
    assert await queue.get_job(job_id) == stored


async def test_stall_recovery_requeues_then_fails_past_max_stalls_with_its_error_record(
    make_queue: Callable[..., Queue],
) -> None:
    queue = make_queue(max_stalls=1)
    recovery = stall_recovery(1, queue.retention)
    job_id = await queue.add(NOOP)

    await _claimed(queue, lease_s=0.01)
    before, now = await queue.get_job(job_id), time.time() + 1
    (first,) = await queue.backend.recover_stalled(queue.name, now, recovery)
    assert first == await queue.get_job(job_id) == _after(before, recovery.requeue, now)
    assert (first.status, first.stalls, first.ready_at) == (JobState.WAITING, 1, now)

    await _claimed(queue, lease_s=0.01)
    before, now = await queue.get_job(job_id), time.time() + 1
    (second,) = await queue.backend.recover_stalled(queue.name, now, recovery)
    assert second == await queue.get_job(job_id) == _after(before, recovery.fail, now)
    assert (second.status, second.stalls, second.finished_at) == (JobState.FAILED, 2, now)
    assert second.error == {
        "type": "StalledJobError",
        "message": "the job's worker vanished 2 times (max_stalls=1)",
    }
    assert await queue.backend.recover_stalled(queue.name, now + 1, recovery) == []


async def _record_ttl_s(backend: BaseBackend, queue: str, job_id: str) -> float | None:
    """How long the store itself keeps a finished record, for stores that expire records
    (Redis); None for those whose retention is the scheduler's purge alone (memory)."""
    from asyncmq.backends.redis import RedisBackend

    if not isinstance(backend, RedisBackend):
        return None
    left_ms: int = await backend.client.pttl(f"{backend.prefix}:{{{queue}}}:job:{job_id}")
    return left_ms / 1000


async def test_cancel_and_stall_recovery_keep_finished_jobs_by_the_queues_own_retention(
    make_queue: Callable[..., Queue],
) -> None:
    configure(Settings(result_ttl_seconds=60, keep_finished_jobs=10_000))  # the global policy
    queue = make_queue(result_ttl=7200, keep_finished=2, max_stalls=0)  # the queue's own
    cancelled = await _cancelled(queue)
    await queue.add(NOOP)
    await _claimed(queue, lease_s=0.01)
    (stalled,) = await queue.backend.recover_stalled(
        queue.name, time.time() + 1, stall_recovery(0, queue.retention)
    )
    assert stalled.status is JobState.FAILED

    now = time.time()
    for job_id in (cancelled, stalled.id):
        ttl_s = await _record_ttl_s(queue.backend, queue.name, job_id)
        assert ttl_s is None or 7000 < ttl_s <= 7200, f"record kept {ttl_s}s, not the queue's 7200s"
    assert await queue.backend.purge_finished(queue.name, now + 3600, queue.retention) == 0
    assert await queue.counts() == counts(cancelled=1, failed=1)
    assert await queue.backend.purge_finished(queue.name, now + 7300, queue.retention) == 2


async def test_cancel_keeps_at_most_the_queues_keep_finished_newest_jobs(
    make_queue: Callable[..., Queue],
) -> None:
    queue = make_queue(keep_finished=2)
    ids = [await _cancelled(queue) for _ in range(3)]

    assert await queue.counts() == counts(cancelled=2)
    assert [job.id for job in await queue.list_jobs("cancelled")] == ids[:0:-1]  # newest first
