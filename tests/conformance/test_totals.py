"""The queue totals (`asyncmq.transitions.TOTALS`) on every backend: each move of a job adds to
exactly the totals its transition or outcome names, for the job's task, whoever made the move;
a release, a duplicate id or a promotion adds nothing. A deduplicated add adds to
`deduplicated` when it stores nothing, to `debounced` (and `enqueued`) when it replaces its
key's delayed holder, for the task of the job it was given."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from asyncmq import Backoff, JobState, Queue
from asyncmq.deduplication import Deduplication
from asyncmq.transitions import RELEASE, TOTALS, stall_recovery
from tests.conformance.damage import damage
from tests.conformance.support import always_fail, counts, noop

NOOP = noop.name
FAIL = always_fail.name


async def _totals(queue: Queue) -> dict[str, dict[str, int]]:
    """The stored totals, without the names at 0 (a backend may keep or leave them out)."""
    totals = (await queue.stats()).totals
    assert all(name in TOTALS for by_name in totals.values() for name in by_name)
    return {task: {name: n for name, n in by_name.items() if n} for task, by_name in totals.items()}


async def _claim(queue: Queue, lease_s: float = 30.0) -> None:
    claimed = await queue.backend.claim(queue.name, "w1", 1, lease_s, time.time(), None)
    assert len(claimed.jobs) + len(claimed.unreadable) == 1


async def test_outcomes_and_control_moves_add_to_the_totals_of_their_task(queue: Queue) -> None:
    done = await queue.add(NOOP)
    await queue.add(NOOP, job_id=done)  # the same id again: nothing stored, nothing counted
    assert await queue.worker().process() is True

    failing = await queue.add(FAIL, retries=1, backoff=Backoff.fixed(0))
    assert await queue.worker().process() is True  # retried
    assert await queue.worker().process() is True  # failed
    assert await queue.retry_job(failing) is True  # back in line: enqueued again
    assert await queue.cancel(failing) is True

    expired = queue.build_job(NOOP, ttl=1, now=time.time() - 10)
    await queue.store([expired])
    assert await queue.worker().process() is True  # claimed, then expired

    await queue.add(NOOP, delay=600)
    (delayed,) = await queue.list_jobs(JobState.DELAYED)
    assert await queue.cancel(delayed.id) is True

    assert await _totals(queue) == {
        NOOP: {"enqueued": 3, "claimed": 2, "completed": 1, "expired": 1, "cancelled": 1},
        FAIL: {"enqueued": 2, "claimed": 2, "retried": 1, "failed": 1, "cancelled": 1},
    }


async def test_recovery_release_and_cancel_of_an_active_job_add_what_they_name(
    make_queue: Callable[..., Queue],
) -> None:
    queue = make_queue(max_stalls=1)
    recovery = stall_recovery(1, queue.retention)
    await queue.add(NOOP)
    await _claim(queue, lease_s=0.05)
    assert len(await queue.backend.recover_stalled(queue.name, time.time() + 100, recovery)) == 1
    await _claim(queue, lease_s=0.05)
    (failed,) = await queue.backend.recover_stalled(queue.name, time.time() + 100, recovery)
    assert failed.status is JobState.FAILED  # its second stall: stalled and failed

    released = await queue.add(NOOP)
    claimed = await queue.backend.claim(queue.name, "w1", 1, 30.0, time.time(), None)
    await queue.backend.release(claimed.jobs, RELEASE, time.time())  # counts nothing
    assert (await queue.get_job(released)).status is JobState.WAITING
    await _claim(queue)
    assert await queue.cancel(released) is True

    assert await _totals(queue) == {
        NOOP: {"enqueued": 2, "claimed": 4, "stalled": 2, "failed": 1, "cancelled": 1},
    }


async def test_a_job_failed_for_an_unreadable_record_counts_as_claimed_and_failed(queue: Queue) -> None:
    job_id = await queue.add(NOOP)
    if not await damage(queue.backend, queue.name, job_id, "args"):
        pytest.skip(f"the {queue.backend.name} backend cannot store a garbage args field")
    assert await queue.worker().process() is True
    assert await _totals(queue) == {NOOP: {"enqueued": 1, "claimed": 1, "failed": 1}}


async def test_a_bulk_add_counts_each_new_job_once_and_promotion_counts_nothing(queue: Queue) -> None:
    await queue.add_bulk(
        [
            {"task_id": NOOP, "job_id": "a"},
            {"task_id": NOOP, "job_id": "a"},
            {"task_id": FAIL, "job_id": "b", "delay": 0.01},
        ]
    )
    promoted, _ = await queue.backend.promote_due(queue.name, time.time() + 1, 100)
    assert promoted == 1
    assert await _totals(queue) == {NOOP: {"enqueued": 1}, FAIL: {"enqueued": 1}}


async def test_a_duplicate_add_counts_deduplicated_for_the_task_it_was_given(queue: Queue) -> None:
    held = await queue.add(NOOP, deduplication={"id": "k"})
    assert await queue.add(NOOP, deduplication={"id": "k"}) == held
    assert await queue.add(FAIL, deduplication={"id": "k", "ttl": 60, "extend": True}) == held
    # Its id stored already: nothing stored and nothing counted, as for any add of an id stored.
    assert await queue.add(NOOP, job_id=held, deduplication={"id": "other"}) == held
    job, key = queue.build_job(NOOP), Deduplication("again")
    assert (await queue.backend.enqueue_deduplicated(job, key, time.time())).stored
    assert (await queue.backend.enqueue_deduplicated(job, key, time.time())).stored  # sent again

    assert await _totals(queue) == {NOOP: {"enqueued": 2, "deduplicated": 1}, FAIL: {"deduplicated": 1}}
    assert await queue.counts() == counts(waiting=2)


async def test_a_debounce_counts_the_delayed_holder_it_replaced_and_a_holder_no_longer_delayed_a_duplicate(
    queue: Queue,
) -> None:
    options = {"id": "search", "replace": True}
    first = await queue.add(NOOP, delay=600, debounce=options)
    second = await queue.add(NOOP, delay=600, debounce=options)  # in first's place
    third = await queue.add(FAIL, debounce=options)  # in second's place, waiting
    assert len({first, second, third}) == 3
    assert await queue.add(NOOP, delay=600, debounce=options) == third  # waiting: kept

    assert await _totals(queue) == {
        NOOP: {"enqueued": 2, "debounced": 1, "deduplicated": 1},
        FAIL: {"enqueued": 1, "debounced": 1},
    }
    assert await queue.counts() == counts(waiting=1)


async def test_a_bulk_add_counts_duplicates_inside_it_and_of_stored_holders(queue: Queue) -> None:
    await queue.add(NOOP, deduplication={"id": "stored"})
    await queue.add(NOOP, delay=600, deduplication={"id": "later"})
    ids = await queue.add_bulk(
        [
            {"task_id": NOOP, "deduplication": {"id": "new"}},
            {"task_id": NOOP},
            {"task_id": FAIL, "deduplication": {"id": "new"}},  # the first entry holds it
            {"task_id": NOOP, "deduplication": {"id": "stored"}},  # a stored job holds it
            {"task_id": FAIL, "delay": 600, "debounce": {"id": "later", "replace": True}},
            {"task_id": FAIL, "delay": 600, "debounce": {"id": "later", "replace": True}},
        ]
    )

    assert ids[2] == ids[0]
    assert await _totals(queue) == {
        NOOP: {"enqueued": 4, "deduplicated": 1},
        FAIL: {"enqueued": 2, "deduplicated": 1, "debounced": 2},
    }
    assert await queue.counts() == counts(waiting=3, delayed=1)
