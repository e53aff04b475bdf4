"""Jobs that run after others (`depends_on`) and flows, held to `asyncmq.dependencies`: a child
waits `blocked` until every parent completed, reads their results, and a parent that ends
otherwise fails, frees or keeps its children by their policy."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import asyncmq
from asyncmq import FlowJob, FlowProducer, JobState, Queue
from asyncmq.errors import InvalidJobError, JobFailedError, UnknownParentError, UnsupportedError
from tests.conformance.support import EventRecorder, always_fail, counts, noop

#: What each `remember` run saw, by its argument.
SEEN: dict[str, dict[str, Any]] = {}


@asyncmq.task
async def give(value: Any) -> Any:
    return value


@asyncmq.task
async def remember(key: str) -> str:
    SEEN[key] = asyncmq.current_job().parent_results
    return key


GIVE, REMEMBER, NOOP, FAIL = give.name, remember.name, noop.name, always_fail.name


async def _drain(queue: Queue) -> None:
    """Run the queue's jobs until none is ready."""
    worker = queue.worker()
    while await worker.process():
        pass


async def _status(queue: Queue, job_id: str) -> JobState:
    job = await queue.get_job(job_id)
    assert job is not None
    return job.status


async def test_a_child_waits_blocked_for_its_parents_then_runs_with_their_results(
    queue: Queue, events: EventRecorder
) -> None:
    first = await queue.add(GIVE, args=[{"rows": 3}])
    second = await queue.add(GIVE, args=["two"])
    child = await queue.add(REMEMBER, args=[child_key := f"{queue.name}-child"], depends_on=[first, second])
    assert await _status(queue, child) is JobState.BLOCKED
    assert (await queue.counts())["blocked"] == 1
    assert [p["id"] for p in events.of("job:blocked")] == [child]
    assert [job.id for job in await queue.list_jobs(JobState.BLOCKED)] == [child]

    worker = queue.worker()
    assert await worker.process() is True  # the first parent
    assert await _status(queue, child) is JobState.BLOCKED  # one parent still pending
    assert await worker.process() is True  # the second: the child is released with it
    assert await _status(queue, child) is JobState.WAITING
    assert await worker.process() is True
    assert SEEN.pop(child_key) == {first: {"rows": 3}, second: "two"}
    assert await queue.counts() == counts(completed=3)
    totals = (await queue.stats()).totals[REMEMBER]
    assert {name: n for name, n in totals.items() if n} == {"enqueued": 1, "claimed": 1, "completed": 1}


async def test_a_child_of_parents_completed_already_is_ready_at_once_with_their_results(queue: Queue) -> None:
    parent = await queue.add(GIVE, args=[7])
    await _drain(queue)
    child = await queue.add(REMEMBER, args=[key := f"{queue.name}-late"], depends_on=[parent])
    assert await _status(queue, child) is JobState.WAITING
    await _drain(queue)
    assert SEEN.pop(key) == {parent: 7}


async def test_a_failed_parent_fails_its_children_and_theirs_naming_the_parent(
    queue: Queue, events: EventRecorder
) -> None:
    parent = await queue.add(FAIL)
    child = await queue.add(NOOP, depends_on=[parent])
    grandchild = await queue.add(NOOP, depends_on=[child])
    assert await queue.worker().process() is True
    assert await queue.worker().process() is False  # nothing else ever ran
    for job_id, cause in ((child, parent), (grandchild, child)):
        job = await queue.get_job(job_id)
        assert job is not None
        assert job.status is JobState.FAILED
        assert job.error is not None
        assert job.error["type"] == "ParentFailedError"
        assert f"parent job {cause} of queue {queue.name!r} ended failed" == job.error["message"]
    failed = events.of("job:failed")
    assert sorted(p["id"] for p in failed) == sorted([parent, child, grandchild])
    assert (await queue.stats()).totals[NOOP]["failed"] == 2


async def test_a_cancelled_parent_fails_its_child_and_a_blocked_child_can_be_cancelled(queue: Queue) -> None:
    parent = await queue.add(NOOP, delay=60)
    child = await queue.add(NOOP, depends_on=[parent])
    other = await queue.add(NOOP, depends_on=[parent])
    assert await queue.cancel(other) is True
    assert await _status(queue, other) is JobState.CANCELLED
    assert await queue.cancel(parent) is True
    assert await _status(queue, child) is JobState.FAILED


async def test_on_parent_failure_ignore_runs_the_child_and_wait_keeps_it_for_a_retry(queue: Queue) -> None:
    parent = await queue.add(FAIL)
    ignoring = await queue.add(
        REMEMBER, args=[key := f"{queue.name}-ign"], depends_on=[parent], on_parent_failure="ignore"
    )
    waiting = await queue.add(NOOP, depends_on=[parent], on_parent_failure="wait")
    await _drain(queue)
    assert SEEN.pop(key) == {}  # the failed parent left no result
    assert await _status(queue, ignoring) is JobState.COMPLETED
    assert await _status(queue, waiting) is JobState.BLOCKED


async def test_a_waiting_child_is_freed_when_its_parent_is_retried_and_completes(queue: Queue) -> None:
    parent = await queue.add(GIVE, args=[1], delay=60)
    child = await queue.add(NOOP, depends_on=[parent], on_parent_failure="wait")
    assert await queue.cancel(parent) is True
    assert await _status(queue, child) is JobState.BLOCKED
    assert await queue.retry_job(parent) is True
    await _drain(queue)
    assert await _status(queue, child) is JobState.COMPLETED


async def test_a_released_child_still_waits_for_its_own_delay(queue: Queue) -> None:
    parent = await queue.add(NOOP)
    child = await queue.add(NOOP, depends_on=[parent], delay=60)
    assert await _status(queue, child) is JobState.BLOCKED
    await _drain(queue)
    assert await _status(queue, child) is JobState.DELAYED


async def test_an_unknown_parent_is_refused_and_nothing_is_stored(queue: Queue) -> None:
    with pytest.raises(UnknownParentError, match="depends on job nope of queue"):
        await queue.add_bulk([{"task_id": NOOP, "job_id": "a"}, {"task_id": NOOP, "depends_on": ["nope"]}])
    assert await queue.counts() == counts()
    with pytest.raises(InvalidJobError, match="depends_on must be a list"):
        await queue.add(NOOP, depends_on="a")  # type: ignore[typeddict-item]
    with pytest.raises(InvalidJobError, match="on_parent_failure must be one of"):
        await queue.add(NOOP, depends_on=["a"], on_parent_failure="skip")  # type: ignore[typeddict-item]
    with pytest.raises(InvalidJobError, match="cannot depend on itself"):
        await queue.add(NOOP, job_id="me", depends_on=["me"])
    with pytest.raises(UnsupportedError, match="both depend on others"):
        await queue.add(NOOP, depends_on=["a"], deduplication={"id": "one"})


async def test_a_flow_across_queues_is_stored_in_one_call_and_runs_parents_first(
    make_queue: Any, queue: Queue
) -> None:
    other = Queue(f"{queue.name}-loads", backend=queue.backend)
    extract = FlowJob(GIVE, args=[{"rows": 10}])
    transform = FlowJob(REMEMBER, args=[key := f"{queue.name}-flow"], depends_on=[extract])
    load = FlowJob(NOOP, queue=other.name, depends_on=[transform])
    if not queue.backend.cross_queue_dependencies:  # one atomic step cannot reach two queues
        with pytest.raises(UnsupportedError, match="keep the flow in one queue"):
            await FlowProducer(queue.backend).add_flow(queue.name, [load, transform, extract])
        parent = await queue.add(NOOP)
        with pytest.raises(UnsupportedError, match="must share one queue"):
            await other.add(NOOP, depends_on=[parent])
        assert await queue.counts() == counts(waiting=1)
        assert await other.counts() == counts()
        return
    # Children first: the producer puts them in order.
    ids = await FlowProducer(queue.backend).add_flow(queue.name, [load, transform, extract])
    assert ids == [load.id, transform.id, extract.id]
    assert ids[0].queue.name == other.name
    assert await queue.counts() == counts(waiting=1, blocked=1)
    assert await other.counts() == counts(blocked=1)

    await _drain(queue)
    assert SEEN.pop(key) == {extract.id: {"rows": 10}}
    assert await _status(other, load.id) is JobState.WAITING
    await _drain(other)
    assert await other.counts() == counts(completed=1)
    await other.backend.delete_queue(other.name)


async def test_a_failed_parent_fails_its_child_in_another_queue_and_wakes_the_childs_result_waiter(
    queue: Queue, events: EventRecorder
) -> None:
    if not queue.backend.cross_queue_dependencies:
        pytest.skip(f"the {queue.backend.name} backend keeps dependencies within one queue")
    other = Queue(f"{queue.name}-next", backend=queue.backend)
    parent = await queue.add(FAIL)
    child = await other.add(NOOP, depends_on=[parent])
    grandchild = await other.add(NOOP, depends_on=[child])
    with pytest.raises(JobFailedError, match="ParentFailedError"):  # woken by the cascade
        await asyncio.gather(other.result(grandchild, timeout=30), _drain(queue))
    assert await other.counts() == counts(failed=2)
    assert [p["id"] for p in events.of("job:failed")] == [parent]  # the events of its own queue
    await other.backend.delete_queue(other.name)


async def test_a_flow_with_a_cycle_or_a_missing_parent_stores_nothing(queue: Queue) -> None:
    a = FlowJob(NOOP, job_id="a", depends_on=["b"])
    b = FlowJob(NOOP, job_id="b", depends_on=["a"])
    with pytest.raises(InvalidJobError, match="cycle"):
        await FlowProducer(queue.backend).add_flow(queue.name, [a, b])
    with pytest.raises(UnknownParentError):
        await FlowProducer(queue.backend).add_flow(
            queue.name, [{"task_id": NOOP, "job_id": "c"}, {"task_id": NOOP, "depends_on": ["gone"]}]
        )
    assert await queue.counts() == counts()


async def test_a_backend_without_dependencies_refuses_them_by_name(queue: Queue) -> None:
    queue.backend.supports_dependencies = False  # as one that lacks them
    try:
        with pytest.raises(UnsupportedError, match="does not store jobs with depends_on"):
            await queue.add(NOOP, depends_on=["x"])
    finally:
        del queue.backend.supports_dependencies
    assert await queue.counts() == counts()


def _removed(job: Any, parent: str, queue: Queue) -> None:
    assert job is not None
    assert job.status is JobState.FAILED
    assert job.error == {
        "type": "ParentFailedError",
        "message": f"parent job {parent} of queue {queue.name!r} was removed",
    }


async def test_a_removed_parent_fails_its_children_or_frees_them_by_their_policy(
    queue: Queue, events: EventRecorder
) -> None:
    parent = await queue.add(NOOP, delay=60)
    child = await queue.add(NOOP, depends_on=[parent])
    grandchild = await queue.add(NOOP, depends_on=[child])
    ignoring = await queue.add(
        REMEMBER, args=[key := f"{queue.name}-rm"], depends_on=[parent], on_parent_failure="ignore"
    )
    # "wait" waits for a retry of the parent, which cannot come: the child stays blocked.
    waiting = await queue.add(NOOP, depends_on=[parent], on_parent_failure="wait")
    result = asyncio.ensure_future(queue.result(grandchild, timeout=30))
    await asyncio.sleep(0)
    assert await queue.remove_job(parent) is True
    with pytest.raises(JobFailedError, match="ParentFailedError"):  # woken by the removal
        await result
    _removed(await queue.get_job(child), parent, queue)
    cascaded = await queue.get_job(grandchild)
    assert cascaded is not None
    assert cascaded.status is JobState.FAILED
    assert cascaded.error is not None
    assert cascaded.error["message"] == f"parent job {child} of queue {queue.name!r} ended failed"
    assert await _status(queue, ignoring) is JobState.WAITING
    assert await _status(queue, waiting) is JobState.BLOCKED
    assert sorted(p["id"] for p in events.of("job:failed")) == sorted([child, grandchild])
    assert await queue.counts() == counts(waiting=1, blocked=1, failed=2)
    assert (await queue.stats()).totals[NOOP]["failed"] == 2
    await _drain(queue)
    assert SEEN.pop(key) == {}  # the removed parent left no result


async def test_a_drain_fails_the_children_of_the_jobs_it_deletes(queue: Queue, events: EventRecorder) -> None:
    waiting = await queue.add(NOOP)
    delayed = await queue.add(NOOP, delay=60)
    of_waiting = await queue.add(NOOP, depends_on=[waiting])
    of_delayed = await queue.add(NOOP, depends_on=[delayed])
    of_both = await queue.add(NOOP, depends_on=[delayed, waiting])
    ignoring = await queue.add(NOOP, depends_on=[waiting], on_parent_failure="ignore")
    assert await queue.drain() == 1
    assert await _status(queue, ignoring) is JobState.WAITING  # freed after the drain, not drained
    await _drain(queue)
    assert await _status(queue, ignoring) is JobState.COMPLETED
    _removed(await queue.get_job(of_waiting), waiting, queue)
    _removed(await queue.get_job(of_both), waiting, queue)
    assert await _status(queue, of_delayed) is JobState.BLOCKED
    assert await queue.drain(include_delayed=True) == 1
    _removed(await queue.get_job(of_delayed), delayed, queue)
    assert sorted(p["id"] for p in events.of("job:failed")) == sorted([of_waiting, of_both, of_delayed])
    assert await queue.counts() == counts(completed=1, failed=3)
    assert (await queue.stats()).totals[NOOP]["failed"] == 3


async def test_a_debounce_that_replaces_a_parent_fails_its_children(
    queue: Queue, events: EventRecorder
) -> None:
    holder = await queue.add(NOOP, delay=60, deduplication={"id": "d", "ttl": 60, "replace": True})
    child = await queue.add(NOOP, depends_on=[holder])
    replacement = await queue.add(NOOP, delay=60, deduplication={"id": "d", "ttl": 60, "replace": True})
    assert replacement != holder
    _removed(await queue.get_job(child), holder, queue)
    assert [p["id"] for p in events.of("job:failed")] == [child]
    assert await queue.counts() == counts(delayed=1, failed=1)
