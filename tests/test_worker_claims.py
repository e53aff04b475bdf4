"""How many jobs a worker claims at once: a job for each idle slot plus what its slots will run
while the next claim travels. Short jobs come in full batches; long ones are not hoarded."""

from __future__ import annotations

import asyncio
import statistics
from collections.abc import Sequence

import asyncmq
from asyncmq import Queue
from asyncmq.backends.base import ClaimResult, RateLimit
from asyncmq.backends.memory import InMemoryBackend
from asyncmq.job import Job
from asyncmq.transitions import Retention
from tests.conformance.support import WAIT_S, StartWorker

CLAIM_S = 0.002  # a claim's round trip, as on a networked store


@asyncmq.task
async def quick() -> None:
    return None


@asyncmq.task
async def slow() -> None:
    await asyncio.sleep(0.05)


class SlowClaims(InMemoryBackend):
    """Claims take a round trip; every claim's `limit` is recorded."""

    def __init__(self) -> None:
        super().__init__()
        self.limits: list[int] = []

    async def claim(
        self, queue: str, worker_id: str, limit: int, lease_s: float, now: float, rate: RateLimit | None
    ) -> ClaimResult:
        self.limits.append(limit)
        await asyncio.sleep(CLAIM_S)
        return await super().claim(queue, worker_id, limit, lease_s, now, rate)


async def _drain(task: str, jobs: int) -> list[int]:
    backend = SlowClaims()
    queue = Queue("claims", backend=backend)
    await queue.add_bulk([{"task_id": task}] * jobs)
    worker = queue.worker(concurrency=4, claim_batch=100, burst=True, handle_signals=False)
    await asyncio.wait_for(worker.run(), WAIT_S)
    assert await queue.counts() == {**dict.fromkeys(await queue.counts(), 0), "completed": jobs}
    return backend.limits


async def test_short_jobs_are_claimed_in_full_batches() -> None:
    limits = await _drain(quick.name, 1000)

    assert limits[0] == 8  # before any job ran: one ahead for each slot
    assert max(limits) == 100
    assert len(limits) <= 1000 // 100 + 5


async def test_long_jobs_are_claimed_only_for_the_slots_about_to_free() -> None:
    limits = await _drain(slow.name, 40)

    # A slot that frees asks for itself and the one job its slots get through during a 2 ms
    # claim of 50 ms jobs, not a job ahead for every slot, held from other workers. (Slots
    # left idle as the queue runs dry ask for more, hence the median.)
    assert statistics.median(limits[1:]) <= 2, limits


class OutcomesFail(InMemoryBackend):
    """Every outcome store fails (a connection that takes claims but loses every outcome):
    the jobs stay active in the store, held by the worker until their outcomes get through."""

    def __init__(self) -> None:
        super().__init__()
        self.failing = True
        self.failed_finishes = 0
        self.failed_three_times = asyncio.Event()

    async def finish(self, jobs: Sequence[Job], retention: Retention) -> list[bool]:
        if not self.failing:
            return await super().finish(jobs, retention)
        self.failed_finishes += 1
        if self.failed_finishes >= 3:
            self.failed_three_times.set()
        raise ConnectionError("outcome lost")


async def test_a_worker_whose_outcomes_cannot_be_stored_holds_no_more_than_its_cap(
    start_worker: StartWorker,
) -> None:
    backend = OutcomesFail()
    queue = Queue("held", backend=backend)
    await queue.add_bulk([{"task_id": quick.name}] * 500)
    worker = queue.worker(concurrency=2, claim_batch=5, handle_signals=False)
    await start_worker(worker)
    await asyncio.wait_for(backend.failed_three_times.wait(), WAIT_S)

    # The jobs a fault can make run twice are those a worker holds: running, prefetched, or
    # finished with the outcome not stored yet. Without a cap, the slots would go on
    # claiming while outcomes piled up, until every job of the queue was held here.
    assert worker.held_at_most == 2 + 2 * 5
    assert (await queue.counts())["active"] == worker.held_at_most
    backend.failing = False  # the worker stops storing its outcomes
