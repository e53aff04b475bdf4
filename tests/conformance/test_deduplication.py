"""Deduplication and debounce (`deduplication=`, `debounce=`), AsyncMQ's semantics, on every backend."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

import asyncmq
from asyncmq import JobState, Queue
from asyncmq.backends.base import BaseBackend
from asyncmq.deduplication import Deduplicated, Deduplication
from asyncmq.errors import InvalidJobError, JobNotFoundError
from tests.conformance.support import WAIT_S, EventRecorder, counts


@asyncmq.task
async def sync_customer(customer_id: str, version: int = 0) -> str:
    return f"{customer_id}@{version}"


SYNC = sync_customer.name


async def run_until_idle(queue: Queue) -> None:
    await asyncio.wait_for(queue.worker(burst=True, handle_signals=False).run(), WAIT_S)


async def wait_until_let_go(queue: Queue, key: str) -> None:
    """Wait (on the backend's own clock) until no job holds `key`."""
    async with asyncio.timeout(WAIT_S):
        while True:  # a ttl passing is nothing to be woken by: looked at until it has
            if await queue.get_deduplication_job_id(key) is None:
                return
            await asyncio.sleep(0.01)


async def test_a_duplicate_while_the_key_is_held_stores_nothing_and_gets_the_holders_id(
    queue: Queue, events: EventRecorder
) -> None:
    first = await queue.add(SYNC, ["cus_1"], deduplication={"id": "customer:cus_1"})
    again = await queue.add(SYNC, ["cus_1"], {"version": 2}, deduplication={"id": "customer:cus_1"})

    assert again == first
    assert await queue.counts() == counts(waiting=1)
    assert (await queue.get_job(first)).kwargs == {}
    assert await queue.get_deduplication_job_id("customer:cus_1") == first
    assert await queue.get_debounce_job_id("customer:cus_1") == first
    (dropped,) = events.of("job:deduplicated")
    assert dropped["id"] != first
    assert (dropped["task"], dropped["status"]) == (SYNC, "waiting")
    assert dropped["deduplication_id"] == "customer:cus_1"
    assert (dropped["job_id"], dropped["deduplicated_job_id"]) == (first, dropped["id"])
    assert [payload["id"] for payload in events.of("job:enqueued")] == [first]
    assert (await queue.stats()).totals[SYNC]["enqueued"] == 1


async def test_keys_are_apart_per_id_and_per_queue(make_queue: Any, backend: BaseBackend) -> None:
    queue = make_queue()
    other = Queue(f"other-{queue.name}", backend=backend)
    a = await queue.add(SYNC, ["a"], deduplication={"id": "a"})
    b = await queue.add(SYNC, ["b"], deduplication={"id": "b"})
    elsewhere = await other.add(SYNC, ["a"], deduplication={"id": "a"})

    assert len({a, b, elsewhere}) == 3
    assert {job.id for job in await queue.list_jobs(JobState.WAITING)} == {a, b}
    assert [job.id for job in await other.list_jobs(JobState.WAITING)] == [elsewhere]
    await backend.delete_queue(other.name)


async def test_without_ttl_the_key_is_let_go_when_its_job_completes(queue: Queue) -> None:
    first = await queue.add(SYNC, ["cus_1"], deduplication={"id": "customer:cus_1"})
    await run_until_idle(queue)
    assert await queue.get_deduplication_job_id("customer:cus_1") is None

    second = await queue.add(SYNC, ["cus_1"], deduplication={"id": "customer:cus_1"})

    assert second != first
    assert await queue.counts() == counts(waiting=1, completed=1)
    assert await queue.get_deduplication_job_id("customer:cus_1") == second


async def test_without_ttl_a_running_job_still_holds_its_key(queue: Queue) -> None:
    first = await queue.add(SYNC, ["cus_1"], deduplication={"id": "customer:cus_1"})
    claimed = await queue.backend.claim(queue.name, "w1", 1, 30.0, time.time(), None)
    assert [job.id for job in claimed.jobs] == [first]

    assert await queue.add(SYNC, ["cus_1"], deduplication={"id": "customer:cus_1"}) == first
    assert await queue.counts() == counts(active=1)


async def test_a_removed_holder_lets_its_key_go(queue: Queue) -> None:
    first = await queue.add(SYNC, ["cus_1"], delay=60, deduplication={"id": "customer:cus_1"})
    assert await queue.remove_job(first)

    second = await queue.add(SYNC, ["cus_1"], deduplication={"id": "customer:cus_1"})

    assert second != first
    assert await queue.counts() == counts(waiting=1)


async def test_with_ttl_the_key_outlives_its_completed_job(queue: Queue, events: EventRecorder) -> None:
    first = await queue.add(SYNC, ["dash"], deduplication={"id": "dashboard:global", "ttl": 60})
    await run_until_idle(queue)

    again = await queue.add(SYNC, ["dash"], deduplication={"id": "dashboard:global", "ttl": 60})

    assert again == first
    assert await queue.counts() == counts(completed=1)
    assert await queue.get_deduplication_job_id("dashboard:global") == first
    assert len(events.of("job:deduplicated")) == 1


async def test_a_key_with_ttl_is_let_go_once_the_ttl_has_passed(queue: Queue) -> None:
    first = await queue.add(SYNC, ["dash"], deduplication={"id": "dashboard:global", "ttl": 0.05})
    await wait_until_let_go(queue, "dashboard:global")

    second = await queue.add(SYNC, ["dash"], deduplication={"id": "dashboard:global", "ttl": 60})

    assert second != first
    assert await queue.counts() == counts(waiting=2)  # the ttl lets go of the key, not of the job
    assert await queue.get_deduplication_job_id("dashboard:global") == second


async def test_extend_restarts_the_ttl_from_the_duplicate(queue: Queue) -> None:
    first = await queue.add(SYNC, ["dash"], deduplication={"id": "dash", "ttl": 600})
    again = await queue.add(SYNC, ["dash"], deduplication={"id": "dash", "ttl": 0.05, "extend": True})
    assert again == first
    await wait_until_let_go(queue, "dash")  # 600 s restarted as 0.05 s: held no longer

    assert await queue.add(SYNC, ["dash"], deduplication={"id": "dash"}) != first


async def test_a_debounced_job_replaces_its_delayed_holder(queue: Queue, events: EventRecorder) -> None:
    options = {"id": "search:products", "ttl": 30.0, "extend": True, "replace": True}
    first = await queue.add(SYNC, ["products"], {"version": 41}, delay=30, debounce=options)
    second = await queue.add(SYNC, ["products"], {"version": 42}, delay=30, debounce=options)

    assert second != first
    with pytest.raises(JobNotFoundError):
        await queue.get_job(first)
    latest = await queue.get_job(second)
    assert (latest.status, latest.kwargs) == (JobState.DELAYED, {"version": 42})
    assert await queue.counts() == counts(delayed=1)
    assert await queue.get_deduplication_job_id("search:products") == second
    (debounced,) = events.of("job:debounced")
    assert (debounced["id"], debounced["job_id"], debounced["deduplicated_job_id"]) == (second, second, first)
    assert debounced["deduplication_id"] == "search:products"
    assert [payload["id"] for payload in events.of("job:delayed")] == [first, second]
    assert (await queue.stats()).totals[SYNC]["enqueued"] == 2
    assert events.of("job:deduplicated") == []


async def test_a_holder_no_longer_delayed_is_not_replaced(queue: Queue, events: EventRecorder) -> None:
    options = {"id": "search:products", "replace": True}
    first = await queue.add(SYNC, ["products"], deduplication=options)

    again = await queue.add(SYNC, ["products"], delay=30, deduplication=options)

    assert again == first
    assert await queue.counts() == counts(waiting=1)
    assert events.of("job:debounced") == []
    assert len(events.of("job:deduplicated")) == 1


async def test_a_replacing_job_with_extend_restarts_the_ttl(queue: Queue) -> None:
    first = await queue.add(SYNC, ["p"], delay=30, deduplication={"id": "p", "ttl": 600, "replace": True})
    options = {"id": "p", "ttl": 0.05, "replace": True, "extend": True}
    second = await queue.add(SYNC, ["p"], delay=30, deduplication=options)
    assert second != first

    await wait_until_let_go(queue, "p")
    assert await queue.add(SYNC, ["p"], deduplication={"id": "p"}) not in (first, second)


async def test_removing_the_key_lets_the_next_job_in_and_keeps_the_holder(queue: Queue) -> None:
    first = await queue.add(SYNC, ["cus_1"], deduplication={"id": "customer:cus_1", "ttl": 600})

    assert await queue.remove_deduplication_key("customer:cus_1") is True
    assert await queue.remove_deduplication_key("customer:cus_1") is False
    assert await queue.get_deduplication_job_id("customer:cus_1") is None
    second = await queue.add(SYNC, ["cus_1"], deduplication={"id": "customer:cus_1"})

    assert second != first
    assert await queue.counts() == counts(waiting=2)


async def test_a_job_whose_id_exists_stores_nothing_and_takes_no_key(queue: Queue) -> None:
    await queue.add(SYNC, ["cus_1"], job_id="sync-1")

    again = await queue.add(SYNC, ["cus_1"], job_id="sync-1", deduplication={"id": "customer:cus_1"})

    assert again == "sync-1"
    assert await queue.counts() == counts(waiting=1)
    assert await queue.get_deduplication_job_id("customer:cus_1") is None


async def test_the_same_store_sent_again_counts_as_stored_once(queue: Queue, backend: BaseBackend) -> None:
    job = queue.build_job(SYNC, ["cus_1"])
    key = Deduplication("customer:cus_1")
    now = time.time()

    first = await backend.enqueue_deduplicated(job, key, now)
    again = await backend.enqueue_deduplicated(job, key, now)  # as after a lost reply

    assert first == again == Deduplicated(True, job.id)
    assert await queue.counts() == counts(waiting=1)


async def test_concurrent_adds_with_one_key_store_exactly_one_job(make_queue: Any) -> None:
    producers = [make_queue() for _ in range(4)]
    ids = await asyncio.gather(
        *(
            producers[n % 4].add(SYNC, ["cus_1"], {"version": n}, deduplication={"id": "customer:cus_1"})
            for n in range(40)
        )
    )

    assert len(set(ids)) == 1
    assert await producers[0].counts() == counts(waiting=1)
    assert await producers[0].get_deduplication_job_id("customer:cus_1") == ids[0]
    totals = (await producers[0].stats()).totals[SYNC]
    assert {name: n for name, n in totals.items() if n} == {"enqueued": 1, "deduplicated": 39}


async def test_concurrent_debounces_leave_exactly_one_delayed_job(make_queue: Any) -> None:
    producers = [make_queue() for _ in range(4)]
    options = {"id": "search", "replace": True}
    ids = await asyncio.gather(
        *(
            producers[n % 4].add(SYNC, ["p"], {"version": n}, delay=60, deduplication=options)
            for n in range(40)
        )
    )

    assert await producers[0].counts() == counts(delayed=1)
    (kept,) = await producers[0].list_jobs(JobState.DELAYED)
    assert await producers[0].get_deduplication_job_id("search") == kept.id
    assert kept.id in ids
    # Each add stored its job or was a duplicate, and each job stored but the one kept was
    # replaced by a debounce (a duplicate only where one producer's job was still being stored).
    totals = (await producers[0].stats()).totals[SYNC]
    assert totals["enqueued"] + totals.get("deduplicated", 0) == 40
    assert totals["enqueued"] - totals.get("debounced", 0) == 1


async def test_add_bulk_decides_each_deduplicated_entry_as_add_does(
    queue: Queue, events: EventRecorder
) -> None:
    held = await queue.add(SYNC, ["old"], deduplication={"id": "old"})

    ids = await queue.add_bulk(
        [
            {"task_id": SYNC, "args": ["a"], "deduplication": {"id": "a"}},
            {"task_id": SYNC, "args": ["plain"]},
            {"task_id": SYNC, "args": ["a"], "deduplication": {"id": "a"}},
            {"task_id": SYNC, "args": ["old"], "debounce": {"id": "old"}},
        ]
    )

    assert len(ids) == 4
    assert ids[0] == ids[2]
    assert ids[3] == held
    assert len({ids[0], ids[1], held}) == 3
    assert await queue.counts() == counts(waiting=3)
    assert await queue.get_deduplication_job_id("a") == ids[0]
    assert len(events.of("job:deduplicated")) == 2


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"deduplication": {"ttl": 5}}, 'needs an "id"'),
        ({"deduplication": {"id": ""}}, "1 to 256 characters"),
        ({"deduplication": "customer:1"}, "takes a mapping"),
        ({"deduplication": {"id": "a", "ttl": -1}}, "must be > 0 seconds"),
        ({"deduplication": {"id": "a", "replace": "yes"}}, "must be True or False"),
        ({"deduplication": {"id": "a", "window": 5}}, "unknown keys ['window']"),
        ({"deduplication": {"id": "a"}, "debounce": {"id": "a"}}, "give one of them"),
    ],
)
async def test_bad_deduplication_options_are_refused_with_nothing_stored(
    queue: Queue, events: EventRecorder, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidJobError, match=message.replace("[", r"\[").replace("]", r"\]")):
        await queue.add(SYNC, ["cus_1"], **options)
    with pytest.raises(InvalidJobError, match=message.replace("[", r"\[").replace("]", r"\]")):
        await queue.add_bulk([{"task_id": SYNC, "args": ["ok"]}, {"task_id": SYNC, "args": ["x"], **options}])

    assert await queue.counts() == counts()
    assert events.records == []
