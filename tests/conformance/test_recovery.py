"""Workers that vanish or stop: stalled-job recovery, fencing by token, graceful shutdown."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import asyncmq
from asyncmq import JobState, Queue
from asyncmq.backends.base import WorkerInfo
from tests.conformance.support import WAIT_S, EventRecorder, StartWorker, counts, gate


@asyncmq.task
async def noop() -> None:
    return None


@asyncmq.task
async def hold(key: str) -> str:
    return await gate(key).hold()


#: Attempts of `counted` by job id, and the worker that ran each.
RUNS: dict[str, list[str]] = {}


@asyncmq.task
async def counted() -> str:
    job = asyncmq.current_job().job
    RUNS.setdefault(job.id, []).append(job.worker_id or "")
    return job.worker_id or ""


NOOP = noop.name


async def _past(moment: float) -> None:
    """Let the clock pass `moment` (a lease's end: there is no event to wait for)."""
    await asyncio.sleep(max(moment - time.time(), 0.0) + 0.01)


async def _claim_and_vanish(queue: Queue, worker_id: str = "vanished-worker") -> float:
    """Claim the next job with a 50 ms lease as a worker that will never come back; return
    a moment by which its lease has run out."""
    now = time.time()
    claimed = await queue.backend.claim(queue.name, worker_id, 1, 0.05, now, None)
    assert len(claimed.jobs) == 1
    return now + 1


async def test_a_job_whose_worker_vanished_is_recovered_after_its_lease_expires(
    make_queue: Callable[..., Queue], events: EventRecorder
) -> None:
    queue = make_queue(max_stalls=1)
    job_id = await queue.add(NOOP)
    lease_over = await _claim_and_vanish(queue)
    worker = queue.worker()

    await worker.scheduler.tick(lease_over - 1)  # the lease still runs
    assert (await queue.get_job(job_id)).status is JobState.ACTIVE
    assert events.of("job:stalled") == []

    await worker.scheduler.tick(lease_over)

    job = await queue.get_job(job_id)
    assert (job.status, job.stalls, job.attempt, job.worker_id) == (JobState.WAITING, 1, 1, None)
    assert [p["status"] for p in events.of("job:stalled", job_id)] == ["waiting"]
    assert await worker.process() is True
    job = await queue.get_job(job_id)
    assert (job.status, job.attempt) == (JobState.COMPLETED, 2)


async def test_a_job_that_stalls_more_than_max_stalls_times_goes_to_failed(
    make_queue: Callable[..., Queue], events: EventRecorder
) -> None:
    queue = make_queue(max_stalls=1)
    job_id = await queue.add(NOOP)
    worker = queue.worker()

    await worker.scheduler.tick(await _claim_and_vanish(queue))
    await worker.scheduler.tick(await _claim_and_vanish(queue))

    job = await queue.get_job(job_id)
    assert (job.status, job.stalls, job.attempt) == (JobState.FAILED, 2, 2)
    assert job.finished_at is not None
    assert events.names(job_id) == ["job:enqueued", "job:stalled", "job:stalled", "job:failed"]
    assert [p["status"] for p in events.of("job:stalled", job_id)] == ["waiting", "failed"]
    [failed] = events.of("job:failed", job_id)
    assert failed["error"] == {
        "type": "StalledJobError",
        "message": "the job's worker vanished 2 times (max_stalls=1)",
    }
    assert await queue.counts() == counts(failed=1)


async def test_a_stale_worker_cannot_finish_heartbeat_or_report_on_a_recovered_job(queue: Queue) -> None:
    backend = queue.backend
    job_id = await queue.add(NOOP)
    now = time.time()
    [stale] = (await backend.claim(queue.name, "stale-worker", 1, 0.05, now, None)).jobs
    await queue.worker().scheduler.tick(now + 1)
    [fresh] = (await backend.claim(queue.name, "new-owner", 1, 30.0, time.time(), None)).jobs
    assert fresh.token != stale.token

    stale.progress = 50
    assert await backend.save_progress(stale) is False
    stale_info = WorkerInfo("stale-worker", queue.name, "host", 1, 1, now, now, now + 30)
    assert await backend.heartbeat(stale_info, [stale], time.time() + 30) == [job_id]
    stale.status, stale.result, stale.finished_at = JobState.COMPLETED, "stale", time.time()
    assert await backend.finish([stale], queue.retention) == [False]

    job = await queue.get_job(job_id)
    assert (job.status, job.worker_id, job.result, job.progress) == (JobState.ACTIVE, "new-owner", None, None)
    fresh.status, fresh.result, fresh.finished_at = JobState.COMPLETED, "fresh", time.time()
    assert await backend.finish([fresh], queue.retention) == [True]
    job = await queue.get_job(job_id)
    assert (job.status, job.result) == (JobState.COMPLETED, "fresh")


async def test_a_late_result_from_a_worker_whose_lease_ran_out_is_rejected(
    make_queue: Callable[..., Queue], events: EventRecorder
) -> None:
    slow = make_queue(lease=0.05).worker()  # `process()` sends no heartbeats: the lease just runs out
    rescuer = make_queue().worker()
    job_id = await make_queue().add(hold.name, args=[slow.queue.name])
    running = asyncio.create_task(slow.process())
    await events.wait("job:started", job_id=job_id)

    await rescuer.scheduler.tick(time.time() + 1)
    gate(slow.queue.name).opened.set()
    assert await asyncio.wait_for(running, WAIT_S) is True

    job = await rescuer.queue.get_job(job_id)
    assert (job.status, job.stalls, job.result) == (JobState.WAITING, 1, None)
    assert events.of("job:completed") == []
    assert await rescuer.process() is True
    job = await rescuer.queue.get_job(job_id)
    assert (job.status, job.attempt, job.result) == (JobState.COMPLETED, 2, "finished")


async def test_a_stopped_worker_lets_its_running_job_finish_within_the_grace_period(
    queue: Queue, events: EventRecorder, start_worker: StartWorker
) -> None:
    job_id = await queue.add(hold.name, args=[queue.name])
    worker = queue.worker(handle_signals=False, shutdown_grace=WAIT_S)
    running = await start_worker(worker)
    await events.wait("job:started", job_id=job_id)

    worker.stop()
    done, _ = await asyncio.wait({running}, timeout=0.05)
    assert done == set()  # still waiting for the job
    gate(queue.name).opened.set()
    await asyncio.wait_for(running, WAIT_S)

    job = await queue.get_job(job_id)
    assert (job.status, job.result) == (JobState.COMPLETED, "finished")
    assert not gate(queue.name).interrupted.is_set()
    assert await queue.counts() == counts(completed=1)
    assert [p["worker_id"] for p in events.of("worker:stopped")] == [worker.id]


async def test_a_worker_stopped_without_grace_hands_its_unfinished_job_back_to_waiting(
    queue: Queue, events: EventRecorder, start_worker: StartWorker
) -> None:
    job_id = await queue.add(hold.name, args=[queue.name])
    worker = queue.worker(handle_signals=False, shutdown_grace=0)
    running = await start_worker(worker)
    await events.wait("job:started", job_id=job_id)

    worker.stop()
    await asyncio.wait_for(running, WAIT_S)

    assert gate(queue.name).interrupted.is_set()
    job = await queue.get_job(job_id)
    assert (job.status, job.attempt, job.worker_id) == (JobState.WAITING, 0, None)
    assert await queue.counts() == counts(waiting=1)
    assert events.names(job_id) == ["job:enqueued", "job:started", "job:abandoned"]

    gate(queue.name).opened.set()
    assert await queue.worker().process() is True
    job = await queue.get_job(job_id)
    assert (job.status, job.attempt, job.result) == (JobState.COMPLETED, 1, "finished")


async def test_a_worker_frozen_past_its_lease_does_not_start_prefetched_jobs_another_worker_ran(
    make_queue: Callable[..., Queue], events: EventRecorder
) -> None:
    """A stopped process, or a blocked event loop, holding prefetched jobs: when it resumes,
    its next heartbeat is still up to a third of a lease away, and short jobs would run twice."""
    stale = make_queue(lease=0.2).worker()
    rescuer = make_queue().worker()
    ids = await stale.queue.add_bulk([{"task_id": counted.name}] * 2)
    await stale._claim(2)  # prefetched; then frozen: no heartbeat renews them
    held = max(job.lease_until or 0.0 for job in stale._buffer)
    assert held > 0.0

    await rescuer.scheduler.tick(time.time() + 1)  # their leases ran out: recovered
    while await rescuer.process():
        pass
    await _past(held)  # the stale worker resumes after its lease
    assert await stale.process() is False

    assert {job_id: RUNS.pop(job_id) for job_id in ids} == {job_id: [rescuer.id] for job_id in ids}
    for job_id in ids:
        job = await rescuer.queue.get_job(job_id)
        assert (job.status, job.attempt, job.result) == (JobState.COMPLETED, 2, rescuer.id)
        assert events.names(job_id) == [
            "job:enqueued", "job:stalled", "job:started", "job:completed", "job:abandoned",
        ]  # fmt: skip


async def test_a_running_worker_frozen_past_its_lease_drops_the_prefetched_job_another_worker_took(
    make_queue: Callable[..., Queue], events: EventRecorder, start_worker: StartWorker
) -> None:
    """The same through `run()`: one slot busy, one job prefetched, and no heartbeat (frozen)."""
    stale = make_queue(lease=0.2).worker(concurrency=1, handle_signals=False)
    stale._heartbeat_loop = asyncio.Event().wait  # type: ignore[method-assign]
    busy = await stale.queue.add(hold.name, args=[stale.queue.name], priority=1)
    prefetched = await stale.queue.add(counted.name, priority=5)
    running = await start_worker(stale)
    await events.wait("job:started", job_id=busy)
    [held] = [job.lease_until or 0.0 for job in stale._buffer if job.id == prefetched]
    await _past(held)

    rescuer = make_queue().worker()
    await rescuer.scheduler.tick(time.time() + 1)
    gate(stale.queue.name).opened.set()
    while await rescuer.process():
        pass
    await events.wait("job:abandoned", job_id=prefetched)
    await events.wait("job:completed", job_id=prefetched)  # by either worker, claimed afresh
    stale.stop()
    await asyncio.wait_for(running, WAIT_S)

    assert len(RUNS.pop(prefetched)) == 1
    job = await rescuer.queue.get_job(prefetched)
    assert (job.status, job.attempt) == (JobState.COMPLETED, 2)
