"""MongoDB dependencies without a transaction: a parent's end and its children's release are
separate steps, ordered so that neither a child added while its parent runs nor a process dying
between the steps leaves a child blocked for good (the scheduler's repair pass)."""

from __future__ import annotations

import time
from typing import Any

from pymongo import AsyncMongoClient

from asyncmq import JobState, Queue
from tests.conformance.support import always_fail, counts, noop
from tests.mongo.conftest import MakeBackend


async def _status(queue: Queue, job_id: str) -> JobState:
    job = await queue.get_job(job_id)
    assert job is not None
    return job.status


async def test_a_child_added_while_its_parent_runs_is_released_by_the_parents_end(
    make_backend: MakeBackend,
) -> None:
    queue = Queue("etl", backend=await make_backend())
    parent = await queue.add(noop.name)
    worker = queue.worker()
    claimed = await queue.backend.claim("etl", "w1", 1, 30, time.time(), None)
    (job,) = claimed.jobs
    child = await queue.add(noop.name, depends_on=[parent])  # after the claim: not in the worker's copy
    job.status, job.finished_at = JobState.COMPLETED, time.time()

    assert await queue.backend.finish([job], queue.retention) == [True]

    assert await _status(queue, child) is JobState.WAITING
    assert await worker.process() is True
    assert await queue.counts() == counts(completed=2)


async def test_the_repair_pass_releases_a_child_whose_parents_end_never_reached_it(
    make_backend: MakeBackend, client: AsyncMongoClient[Any], database: str
) -> None:
    backend = await make_backend()
    queue = Queue("etl", backend=backend)
    parent = await queue.add(noop.name)
    child = await queue.add(noop.name, depends_on=[parent])
    # The parent's end stored by a process that died before releasing its children.
    await client[database]["jobs"].update_one(
        {"_id": f"etl/{parent}"}, {"$set": {"status": "completed", "result": "42", "finished_at": 1.0}}
    )
    await backend.recount("etl")

    await backend.repair_dependencies("etl", time.time())

    assert await _status(queue, child) is JobState.WAITING
    job = await queue.get_job(child)
    assert job is not None
    assert job.deps is not None
    assert job.deps["results"] == {parent: 42}
    assert await queue.counts() == counts(waiting=1, completed=1)


async def test_the_repair_pass_fails_by_its_policy_a_child_whose_parent_is_gone(
    make_backend: MakeBackend, client: AsyncMongoClient[Any], database: str
) -> None:
    backend = await make_backend()
    queue = Queue("etl", backend=backend)
    parent = await queue.add(noop.name)
    child = await queue.add(noop.name, depends_on=[parent])
    ignoring = await queue.add(noop.name, depends_on=[parent], on_parent_failure="ignore")
    await client[database]["jobs"].delete_one({"_id": f"etl/{parent}"})
    await backend.recount("etl")

    await backend.repair_dependencies("etl", time.time())  # too young: its parent may be on its way
    assert await _status(queue, child) is JobState.BLOCKED

    await backend.repair_dependencies("etl", time.time() + 120)

    job = await queue.get_job(child)
    assert job is not None
    assert job.error is not None
    assert job.status is JobState.FAILED
    assert job.error["message"] == (
        f"parent job {parent} of queue 'etl' is gone: deleted before its end reached this job"
    )
    assert await _status(queue, ignoring) is JobState.WAITING
    assert await queue.counts() == counts(waiting=1, failed=1)


async def test_one_repair_pass_runs_per_queue_per_period(make_backend: MakeBackend) -> None:
    backend = await make_backend()
    now = time.time()
    await backend.repair_dependencies("etl", now)
    calls = backend.operation_counts["repair"]
    await backend.repair_dependencies("etl", now + 1)  # another scheduler, within the period
    assert backend.operation_counts["repair"] == calls  # its turn refused: no blocked job read


async def test_a_failed_parents_children_fail_across_queues_with_their_counts(
    make_backend: MakeBackend,
) -> None:
    backend = await make_backend()
    queue, other = Queue("etl", backend=backend), Queue("loads", backend=backend)
    parent = await queue.add(always_fail.name)
    child = await other.add(noop.name, depends_on=[(queue.name, parent)])
    assert await other.counts() == counts(blocked=1)

    assert await queue.worker().process() is True

    assert await _status(other, child) is JobState.FAILED
    assert await queue.counts() == counts(failed=1)
    assert await other.counts() == counts(failed=1)
    assert (await other.stats()).totals[noop.name]["failed"] == 1


async def test_counts_of_two_queues_written_together_each_go_to_their_own_queue(
    make_backend: MakeBackend,
) -> None:
    backend = await make_backend()
    first, second = Queue("one", backend=backend), Queue("two", backend=backend)
    await first.add(noop.name)
    await second.add(noop.name)
    await backend.counts_writer.settle()
    # One call for both queues: their counts go out in one write.
    await backend.enqueue(
        [first.build_job(noop.name), second.build_job(noop.name), second.build_job(noop.name)]
    )

    assert await first.counts() == counts(waiting=2)
    assert await second.counts() == counts(waiting=3)
