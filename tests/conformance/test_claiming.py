"""Handing jobs out: claim order, the claim contract, pause and resume, the rate limit."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

import asyncmq
from asyncmq import JobState, Queue
from asyncmq.backends.base import BaseBackend
from tests.conformance.support import WAIT_S, EventRecorder, StartWorker, counts


@asyncmq.task
async def noop() -> None:
    return None


NOOP = noop.name


async def test_jobs_are_claimed_by_priority_then_age(queue: Queue, events: EventRecorder) -> None:
    low = await queue.add(NOOP, priority=9)
    first_normal = await queue.add(NOOP, priority=5)
    first_urgent = await queue.add(NOOP, priority=1)
    second_normal = await queue.add(NOOP, priority=5)
    second_urgent = await queue.add(NOOP, priority=1)
    worker = queue.worker()

    for _ in range(5):
        assert await worker.process() is True
    assert await worker.process() is False

    started = [payload["id"] for payload in events.of("job:started")]
    assert started == [first_urgent, second_urgent, first_normal, second_normal, low]


async def test_a_claim_takes_a_batch_in_order_and_marks_each_job_active(queue: Queue) -> None:
    ids = [await queue.add(NOOP, priority=priority) for priority in (5, 2, 5, 2)]
    now = time.time()

    claimed = await queue.backend.claim(queue.name, "worker-a", 3, 30.0, now, None)

    assert [job.id for job in claimed.jobs] == [ids[1], ids[3], ids[0]]
    assert claimed.rate_limited_for_s is None
    for job in claimed.jobs:
        assert (job.status, job.attempt, job.worker_id, job.lease_until) == (
            JobState.ACTIVE,
            1,
            "worker-a",
            now + 30.0,
        )
    assert await queue.counts() == counts(waiting=1, active=3)
    assert [job.id for job in await queue.list_jobs("waiting")] == [ids[2]]


async def test_a_paused_queue_hands_out_nothing(queue: Queue, events: EventRecorder) -> None:
    await queue.pause()
    job_id = await queue.add(NOOP)
    worker = queue.worker()

    assert await queue.is_paused() is True
    assert await worker.process() is False
    assert await queue.counts() == counts(waiting=1)

    await queue.resume()

    assert await queue.is_paused() is False
    assert await worker.process() is True
    assert (await queue.get_job(job_id)).status is JobState.COMPLETED
    assert [len(events.of("queue:paused")), len(events.of("queue:resumed"))] == [1, 1]


async def test_resuming_a_queue_wakes_its_idle_workers_at_once(
    queue: Queue,
    backend: BaseBackend,
    events: EventRecorder,
    start_worker: StartWorker,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    idle = asyncio.Event()  # set each time the worker starts waiting for jobs
    original = backend.wait_for_jobs

    async def waiting(queue_name: str, timeout_s: float) -> None:
        idle.set()
        await original(queue_name, timeout_s)

    monkeypatch.setattr(backend, "wait_for_jobs", waiting)
    await queue.pause()
    await start_worker(queue.worker(handle_signals=False))
    idle.clear()
    job_id = await queue.add(NOOP)
    await asyncio.wait_for(idle.wait(), WAIT_S)  # it saw the queue with the job, got nothing, went idle
    assert events.of("job:started") == []

    resumed_at = time.monotonic()
    await queue.resume()
    await events.wait("job:completed", job_id=job_id)

    # An idle worker waits up to a second before it looks again: only a wake-up is this quick.
    assert time.monotonic() - resumed_at < 0.5


async def test_the_rate_limit_spaces_starts_by_its_token_bucket_and_loses_no_job(
    make_queue: Callable[..., Queue], events: EventRecorder
) -> None:
    queue = make_queue(rate_limit=5, rate_interval=1.0, concurrency=10)
    ids = await queue.add_bulk([{"task_id": NOOP} for _ in range(8)])

    await asyncio.wait_for(queue.worker(burst=True, handle_signals=False).run(), WAIT_S)

    starts = sorted(payload["timestamps"]["started_at"] for payload in events.of("job:started"))
    assert len(starts) == 8
    # A full bucket lets 5 start at once; then one token comes back every 0.2 s. A start is
    # stamped a claim's round trip after the bucket's clock read (longer for the first claim
    # on a connection, which prepares its statement): 30 ms of slack.
    assert starts[4] - starts[0] < 0.1
    for k in (5, 6, 7):
        assert starts[k] - starts[0] >= (k - 4) * 0.2 - 0.03
    assert starts[7] - starts[0] < 1.5
    assert events.of("queue:rate_limited") != []
    assert sorted(payload["id"] for payload in events.of("job:completed")) == sorted(ids)
    assert await queue.counts() == counts(completed=8)
