"""How many jobs a worker claims at once: a job for each idle slot plus what its slots will run
while the next claim travels. Short jobs come in full batches; long ones are not hoarded."""

from __future__ import annotations

import asyncio
import statistics

import asyncmq
from asyncmq import Queue
from asyncmq.backends.base import ClaimResult, RateLimit
from asyncmq.backends.memory import InMemoryBackend
from tests.conformance.support import WAIT_S

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
