"""The scheduler on its own, without a worker: promotion on time, the queue's stall policy, and
duties that fail alone (the backend behaviours it relies on are in tests/conformance/)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

import asyncmq
from asyncmq import JobState, Queue
from asyncmq.backends.memory import InMemoryBackend
from asyncmq.schedule import Repeatable
from asyncmq.scheduler import Scheduler
from tests.conformance.support import WAIT_S, EventRecorder


@asyncmq.task
async def noop() -> None:
    return None


class BrokenSchedules(InMemoryBackend):
    """Every read of the schedules fails, as when the backend cannot answer."""

    async def repeatables(self, queue: str) -> list[Repeatable]:
        raise RuntimeError("a malformed schedule")


class BrokenWaits(InMemoryBackend):
    """The blocking wait fails, as on a dropped connection."""

    async def wait_for_schedule(self, queue: str, timeout_s: float) -> None:
        raise ConnectionError("dropped")


@pytest.fixture
def queue_name() -> str:
    return "scheduled"


@asynccontextmanager
async def running(scheduler: Scheduler) -> AsyncIterator[None]:
    task = asyncio.create_task(scheduler.run())
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def _until(queue: Queue, job_id: str, status: JobState) -> None:
    deadline = time.monotonic() + WAIT_S
    while (await queue.get_job(job_id)).status is not status:
        assert time.monotonic() < deadline, f"job {job_id} never became {status}"
        await asyncio.sleep(0.01)


async def test_a_tick_promotes_what_is_due_and_says_when_the_next_job_is() -> None:
    queue = Queue("scheduled", backend=InMemoryBackend())
    soon = await queue.add(noop.name, delay=10)
    later = await queue.add(noop.name, delay=20)
    due = (await queue.get_job(soon)).delay_until
    assert due is not None

    scheduler = Scheduler(queue)
    assert await scheduler.tick(due - 1) == due
    assert await scheduler.tick(due) == (await queue.get_job(later)).delay_until

    assert (await queue.get_job(soon)).status is JobState.WAITING
    assert (await queue.get_job(later)).status is JobState.DELAYED


async def test_running_alone_it_promotes_a_delayed_job_when_it_is_due() -> None:
    queue = Queue("scheduled", backend=InMemoryBackend(), scan_interval=5.0)
    async with running(Scheduler(queue)):
        job_id = await queue.add(noop.name, delay=0.2)  # a sooner job wakes the sleeping scheduler
        await _until(queue, job_id, JobState.WAITING)


async def test_recovery_follows_the_queues_stall_policy(events: EventRecorder) -> None:
    queue = Queue("scheduled", backend=InMemoryBackend(), max_stalls=0)
    job_id = await queue.add(noop.name)
    await queue.backend.claim(queue.name, "gone", 1, 0.01, time.time(), None)

    await Scheduler(queue).tick(time.time() + 1)

    job = await queue.get_job(job_id)
    assert (job.status, job.stalls) == (JobState.FAILED, 1)
    assert events.names(job_id) == ["job:enqueued", "job:stalled", "job:failed"]


async def test_a_failing_duty_does_not_stop_promotion_or_recovery() -> None:
    queue = Queue("scheduled", backend=BrokenSchedules(), scan_interval=0.05, lease=0.05)
    stalled = await queue.add(noop.name)
    await queue.backend.claim(queue.name, "gone", 1, 0.01, time.time(), None)
    async with running(Scheduler(queue)):
        delayed = await queue.add(noop.name, delay=0.1)
        await _until(queue, delayed, JobState.WAITING)
        await _until(queue, stalled, JobState.WAITING)


async def test_a_failing_wait_is_slept_instead_and_the_loop_goes_on() -> None:
    queue = Queue("scheduled", backend=BrokenWaits(), scan_interval=0.05)
    async with running(Scheduler(queue)):
        job_id = await queue.add(noop.name, delay=0.1)
        await _until(queue, job_id, JobState.WAITING)
