"""Operating a queue: cancelling jobs, counting them, listing workers, keeping results."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

import asyncmq
from asyncmq import JobState, Queue
from asyncmq.backends.base import BaseBackend
from asyncmq.errors import JobNotFoundError
from asyncmq.transitions import Retention
from tests.conformance.support import WAIT_S, EventRecorder, StartWorker, always_fail, counts, gate, noop


@asyncmq.task
async def hold(key: str) -> str:
    return await gate(key).hold()


NOOP = noop.name


async def test_cancelling_a_waiting_job_keeps_it_from_running(queue: Queue, events: EventRecorder) -> None:
    job_id = await queue.add(NOOP)

    assert await queue.cancel(job_id) is True

    job = await queue.get_job(job_id)
    assert job.status is JobState.CANCELLED
    assert job.finished_at is not None
    assert await queue.worker().process() is False
    assert await queue.counts() == counts(cancelled=1)
    assert events.names(job_id) == ["job:enqueued", "job:cancelled"]
    assert events.of("job:cancelled")[0]["status"] == "cancelled"


async def test_cancelling_a_delayed_job_keeps_it_from_being_promoted(
    queue: Queue, events: EventRecorder
) -> None:
    job_id = await queue.add(NOOP, delay=60)
    worker = queue.worker()

    assert await queue.cancel(job_id) is True

    assert await worker.scheduler.tick(time.time() + 120) is None
    assert await worker.process() is False
    assert await queue.counts() == counts(cancelled=1)
    assert events.names(job_id) == ["job:delayed", "job:cancelled"]


async def test_cancelling_a_finished_or_unknown_job_does_nothing(queue: Queue, events: EventRecorder) -> None:
    job_id = await queue.add(NOOP)
    assert await queue.worker().process() is True

    assert await queue.cancel(job_id) is False
    assert await queue.cancel("no-such-job") is False

    assert (await queue.get_job(job_id)).status is JobState.COMPLETED
    assert events.of("job:cancelled") == []


async def test_cancelling_a_running_job_interrupts_it_at_the_workers_next_heartbeat(
    make_queue: Callable[..., Queue], events: EventRecorder, start_worker: StartWorker
) -> None:
    queue = make_queue(lease=0.6)  # a heartbeat every 0.2 s
    await start_worker(queue.worker(handle_signals=False))
    job_id = await queue.add(hold.name, args=[queue.name])
    await events.wait("job:started", job_id=job_id)

    assert await queue.cancel(job_id) is True

    await asyncio.wait_for(gate(queue.name).interrupted.wait(), WAIT_S)
    next_id = await queue.add(NOOP)
    await events.wait("job:completed", job_id=next_id)  # the worker goes on
    assert (await queue.get_job(job_id)).status is JobState.CANCELLED
    assert events.names(job_id) == ["job:enqueued", "job:started", "job:cancelled", "job:abandoned"]
    assert await queue.counts() == counts(cancelled=1, completed=1)


async def test_a_cancelled_running_jobs_late_result_is_rejected(queue: Queue, events: EventRecorder) -> None:
    job_id = await queue.add(hold.name, args=[queue.name])
    running = asyncio.create_task(queue.worker().process())
    await events.wait("job:started", job_id=job_id)

    assert await queue.cancel(job_id) is True
    gate(queue.name).opened.set()  # the attempt finishes after all and reports its result

    assert await asyncio.wait_for(running, WAIT_S) is True
    job = await queue.get_job(job_id)
    assert (job.status, job.result) == (JobState.CANCELLED, None)
    assert events.names(job_id) == ["job:enqueued", "job:started", "job:cancelled", "job:abandoned"]
    assert await queue.counts() == counts(cancelled=1)


async def test_counts_report_the_jobs_in_every_state(queue: Queue) -> None:
    worker = queue.worker()
    await queue.add(NOOP)
    await worker.process()  # completed
    await queue.add(always_fail.name)
    await worker.process()  # failed
    expired = queue.build_job(NOOP, ttl=1, now=time.time() - 2)
    await queue.backend.enqueue([expired])
    await worker.process()  # expired
    await queue.cancel(await queue.add(NOOP))  # cancelled
    await queue.add(NOOP, delay=60)  # delayed
    active_id = await queue.add(NOOP)
    claimed = await queue.backend.claim(queue.name, "another-worker", 1, 30.0, time.time(), None)
    assert [job.id for job in claimed.jobs] == [active_id]
    waiting_id = await queue.add(NOOP)

    assert await queue.counts() == {
        "blocked": 0,
        "waiting": 1,
        "delayed": 1,
        "active": 1,
        "completed": 1,
        "failed": 1,
        "expired": 1,
        "cancelled": 1,
    }
    stats = await queue.stats()
    assert stats.paused is False
    assert stats.oldest_waiting_at == (await queue.get_job(waiting_id)).ready_at
    assert [job.id for job in await queue.list_jobs("active")] == [active_id]


async def test_a_running_worker_is_listed_in_the_queue_stats_until_it_stops(
    queue: Queue, start_worker: StartWorker
) -> None:
    worker = queue.worker(concurrency=3, handle_signals=False)
    running = await start_worker(worker)

    [info] = (await queue.stats()).workers
    assert (info.id, info.queue, info.concurrency) == (worker.id, queue.name, 3)
    assert info.expires_at == info.heartbeat_at + queue.lease_s

    worker.stop()
    await asyncio.wait_for(running, WAIT_S)
    assert (await queue.stats()).workers == []


async def test_keep_finished_keeps_only_the_newest_finished_jobs_of_each_state(
    make_queue: Callable[..., Queue],
) -> None:
    queue = make_queue(keep_finished=2)
    worker = queue.worker()
    completed = []
    for _ in range(3):
        completed.append(await queue.add(NOOP))
        await worker.process()
    await queue.add(always_fail.name)
    await worker.process()

    assert await queue.counts() == counts(completed=2, failed=1)
    assert [job.id for job in await queue.list_jobs("completed")] == [completed[2], completed[1]]
    with pytest.raises(JobNotFoundError):
        await queue.get_job(completed[0])


async def test_finished_jobs_older_than_result_ttl_are_purged(make_queue: Callable[..., Queue]) -> None:
    queue = make_queue(result_ttl=60)
    assert queue.retention.ttl_s == 60.0
    worker = queue.worker()
    for _ in range(2):
        await queue.add(NOOP)
        await worker.process()
    await queue.add(NOOP)

    assert await queue.backend.purge_finished(queue.name, time.time(), queue.retention) == 0
    assert await queue.counts() == counts(completed=2, waiting=1)

    assert await queue.backend.purge_finished(queue.name, time.time() + 61, queue.retention) == 2
    assert await queue.counts() == counts(waiting=1)


async def test_a_running_worker_purges_finished_jobs_past_result_ttl(
    make_queue: Callable[..., Queue],
    backend: BaseBackend,
    start_worker: StartWorker,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    queue = make_queue(result_ttl=0)
    await queue.add(NOOP)
    await queue.worker().process()
    assert await queue.counts() == counts(completed=1)
    purged = asyncio.Event()
    original = backend.purge_finished

    async def purge(queue_name: str, now: float, retention: Retention) -> int:
        removed = await original(queue_name, now, retention)
        purged.set()
        return removed

    monkeypatch.setattr(backend, "purge_finished", purge)

    await start_worker(queue.worker(handle_signals=False))
    await asyncio.wait_for(purged.wait(), WAIT_S)

    assert await queue.counts() == counts()


async def test_deleting_a_queue_removes_everything_it_holds(queue: Queue, backend: BaseBackend) -> None:
    job_id = await queue.add(NOOP)
    await queue.add(NOOP, delay=60)
    await queue.add_repeatable(NOOP, every=60)
    await queue.pause()

    await backend.delete_queue(queue.name)

    assert await queue.counts() == counts()
    assert await queue.repeatables() == []
    assert await backend.get_job(queue.name, job_id) is None
    assert queue.name not in await backend.queues()
    assert (await queue.stats()).paused is False


async def _fill_every_state(queue: Queue) -> dict[str, str]:
    """One job in each of waiting (two), delayed, active and completed; their ids by role."""
    worker = queue.worker()
    completed = await queue.add(NOOP)
    assert await worker.process() is True
    active = await queue.add(NOOP)
    # held for an hour: the scheduler ticks below, a few minutes on, do not recover it
    claimed = await queue.backend.claim(queue.name, "another-worker", 1, 3600.0, time.time(), None)
    assert [job.id for job in claimed.jobs] == [active]
    return {
        "completed": completed,
        "active": active,
        "waiting": await queue.add(NOOP),
        "waiting_too": await queue.add(NOOP),
        "delayed": await queue.add(NOOP, delay=60),
    }


async def test_drain_removes_waiting_jobs_and_keeps_delayed_ones_which_still_run_when_due(
    queue: Queue,
) -> None:
    ids = await _fill_every_state(queue)
    worker = queue.worker()

    assert await queue.drain() == 2

    assert await queue.counts() == counts(delayed=1, active=1, completed=1)
    for role in ("waiting", "waiting_too"):
        with pytest.raises(JobNotFoundError):
            await queue.get_job(ids[role])
    assert await worker.process() is False
    delayed = await queue.get_job(ids["delayed"])
    assert await worker.scheduler.tick(delayed.delay_until) is None  # promoted when due
    assert await worker.process() is True
    assert (await queue.get_job(ids["delayed"])).status is JobState.COMPLETED
    assert await queue.counts() == counts(active=1, completed=2)


async def test_drain_with_include_delayed_removes_delayed_jobs_too(queue: Queue) -> None:
    ids = await _fill_every_state(queue)
    worker = queue.worker()

    assert await queue.drain(include_delayed=True) == 3

    assert await queue.counts() == counts(active=1, completed=1)
    with pytest.raises(JobNotFoundError):
        await queue.get_job(ids["delayed"])
    assert await worker.scheduler.tick(time.time() + 120) is None
    assert await worker.process() is False
    later = await queue.add(NOOP)  # the drained queue takes jobs as before
    assert await queue.counts() == counts(waiting=1, active=1, completed=1)
    assert await worker.process() is True
    assert (await queue.get_job(later)).status is JobState.COMPLETED


async def test_drain_with_include_delayed_keeps_a_schedules_pending_occurrence(queue: Queue) -> None:
    """A drain removes jobs, not schedules (`remove_repeatable` stops one): the pending
    occurrence is the schedule's next firing, so it stays and fires on time."""
    await queue.add_repeatable(NOOP, every=30)
    [rep] = await queue.repeatables()
    await queue.add(NOOP, delay=60)
    await queue.add(NOOP)
    worker = queue.worker()

    assert await queue.drain(include_delayed=True) == 2

    assert await queue.counts() == counts(delayed=1)
    [pending] = await queue.list_jobs("delayed")
    assert pending.id == rep.occurrence_id(rep.next_run_at)
    assert await worker.scheduler.tick(rep.next_run_at) == rep.next_run_at + 30
    assert await worker.process() is True
    assert (await queue.get_job(pending.id)).status is JobState.COMPLETED
    assert await queue.counts() == counts(delayed=1, completed=1)
