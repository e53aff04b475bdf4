"""MongoDB deduplication keys: taken before their job is stored (no transaction), so a key
whose job is not there yet is held for a while, then free (the producer vanished)."""

from __future__ import annotations

import time
from typing import Any

from pymongo import AsyncMongoClient

from asyncmq import Queue
from asyncmq.deduplication import Deduplicated, Deduplication
from tests.conformance.support import counts, noop
from tests.mongo.conftest import MakeBackend


async def test_a_key_whose_job_is_still_being_stored_is_held(
    make_backend: MakeBackend, client: AsyncMongoClient[Any], database: str
) -> None:
    queue = Queue("mails", backend=await make_backend())
    pending = {"_id": "mails/k", "queue": "mails", "job_id": "being-stored", "write": "w1"}
    await client[database]["dedup"].insert_one({**pending, "pending_until": time.time() + 60})

    assert await queue.add(noop.name, deduplication={"id": "k"}) == "being-stored"
    assert await queue.counts() == counts()


async def test_a_key_left_by_a_producer_that_vanished_before_storing_its_job_is_free_after_a_while(
    make_backend: MakeBackend, client: AsyncMongoClient[Any], database: str
) -> None:
    queue = Queue("mails", backend=await make_backend())
    left = {"_id": "mails/k", "queue": "mails", "job_id": "never-stored", "write": "w1"}
    await client[database]["dedup"].insert_one({**left, "pending_until": time.time() - 1})

    job_id = await queue.add(noop.name, deduplication={"id": "k"})

    assert job_id != "never-stored"
    assert await queue.get_deduplication_job_id("k") == job_id
    key = await client[database]["dedup"].find_one({"_id": "mails/k"})
    assert key is not None
    assert "pending_until" not in key  # its job is stored: held by the job from now on


async def test_a_key_taken_for_a_job_whose_id_exists_is_given_back(
    make_backend: MakeBackend, client: AsyncMongoClient[Any], database: str
) -> None:
    backend = await make_backend()
    queue = Queue("mails", backend=backend)
    await queue.add(noop.name, job_id="same")
    job = queue.build_job(noop.name, job_id="same")

    async def taken_meanwhile(queue_name: str, job_id: str) -> None:
        return None  # the check before taking the key misses the job: stored since

    backend._find_one_job = taken_meanwhile  # type: ignore[method-assign, assignment]

    assert await backend.enqueue_deduplicated(job, Deduplication("k"), time.time()) == Deduplicated(
        False, None
    )
    assert await client[database]["dedup"].find_one({"_id": "mails/k"}) is None


async def test_a_debounce_that_loses_the_key_after_removing_the_holder_counts_both_ways_once(
    make_backend: MakeBackend,
) -> None:
    """Producers racing for a key: this one removes the delayed holder, another takes the key
    first (the holder gone, nothing holds it) and stores a waiting job, so this add ends a
    duplicate. The removal counts as `debounced` and the add as `deduplicated`: the queue's
    `enqueued` less `debounced` stays the jobs it holds."""
    backend = await make_backend()
    queue = Queue("mails", backend=backend)
    await queue.add(noop.name, delay=600, deduplication={"id": "k"})
    take_key = backend._take_key
    other: list[str] = []

    async def beaten_to_it(key: dict[str, Any], job: Any, expires_at: float | None, now: float) -> str | None:
        if not other:
            other.append("taking")
            other.append(await queue.add(noop.name, deduplication={"id": "k"}))
        return await take_key(key, job, expires_at, now)

    backend._take_key = beaten_to_it  # type: ignore[method-assign]

    got = await queue.add(noop.name, delay=600, deduplication={"id": "k", "replace": True})

    assert got == other[1]
    assert await queue.counts() == counts(waiting=1)
    totals = (await queue.stats()).totals[noop.name]
    assert {name: n for name, n in totals.items() if n} == {"enqueued": 2, "debounced": 1, "deduplicated": 1}
