"""What the MongoDB backend does beyond the conformance suite: a Motor client, wake-ups by
change stream and by poll, claims in a fixed number of round trips, counts and totals kept in
their own documents (through lost replies too), the TTL date of finished jobs, and documents
no worker can run."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pymongo import AsyncMongoClient, monitoring
from pymongo.errors import AutoReconnect

from asyncmq.backends.mongo import MongoBackend
from asyncmq.errors import MalformedJobError
from asyncmq.job import JobState
from asyncmq.queues import Queue
from asyncmq.tasks import task
from asyncmq.transitions import stall_recovery
from tests.conformance.support import WAIT_S, StartWorker, counts
from tests.mongo.conftest import MakeBackend


@task(name="mongo.double")
async def double(number: int) -> int:
    return number * 2


async def test_a_motor_client_runs_jobs_end_to_end(mongo_url: str, make_backend: MakeBackend) -> None:
    from motor.motor_asyncio import AsyncIOMotorClient

    motor: Any = AsyncIOMotorClient(mongo_url)
    try:
        backend = await make_backend(uri_or_client=motor)
        queue = Queue("motor", backend=backend)
        ids = await queue.add_bulk([{"task_id": double.name, "args": [n]} for n in range(20)])
        assert await queue.add(double.name, args=[0], job_id=ids[0]) == ids[0]  # a duplicate: kept once
        await queue.worker(burst=True, handle_signals=False).run()

        assert await queue.counts() == counts(completed=20)
        results = [(await queue.get_job(job_id)).result for job_id in ids]
        assert sorted(results) == [2 * n for n in range(20)]
        await backend.publish_events([("job:completed", {"queue": "motor", "id": ids[0]})])
        [(_, name, payload)] = await backend.read_events("motor", "0", 0)
        assert (name, payload["id"]) == ("job:completed", ids[0])
    finally:
        motor.close()


async def test_a_job_added_by_another_process_wakes_a_waiting_worker_through_the_change_stream(
    make_backend: MakeBackend,
) -> None:
    worker_side, producer = await make_backend(), await make_backend()
    await worker_side.wait_for_jobs("woken", 30)  # opens the stream (and returns: look again)
    assert worker_side.waker.change_streams is True

    waiting = asyncio.create_task(worker_side.wait_for_jobs("woken", 30))
    await asyncio.sleep(0.1)
    assert not waiting.done()
    await Queue("woken", backend=producer).add(double.name, args=[1])
    await asyncio.wait_for(waiting, WAIT_S)  # long before its 30 s


async def test_an_idle_change_stream_does_not_spin_on_a_server_that_answers_at_once(
    mongo_url: str, make_backend: MakeBackend
) -> None:
    """A real MongoDB holds an empty `getMore` up to its await time (1 s); the test server
    answers at once, and a follower that asked again straight away kept it busy thousands of
    times a second, slowing every other client of it."""
    asks = _GetMoreCounter()
    client: AsyncMongoClient[Any] = AsyncMongoClient(mongo_url, event_listeners=[asks])
    backend, producer = await make_backend(uri_or_client=client), await make_backend()
    try:
        await backend.wait_for_jobs("idle", 0)  # opens the stream
        asks.count = 0
        await asyncio.sleep(1)
        assert asks.count <= 150, f"{asks.count} getMore calls in one idle second"

        waiting = asyncio.create_task(backend.wait_for_jobs("idle", 30))
        await Queue("idle", backend=producer).add(double.name, args=[1])
        await asyncio.wait_for(waiting, WAIT_S)  # and still woken by a change
    finally:
        await backend.close()
        await client.close()


class _GetMoreCounter(monitoring.CommandListener):
    count = 0

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.count += event.command_name == "getMore"

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


async def test_without_change_streams_an_idle_worker_polls_a_few_times_a_second_yet_finds_new_jobs(
    make_backend: MakeBackend, start_worker: StartWorker
) -> None:
    backend, producer = await make_backend(change_streams=False), await make_backend()
    looks = 0
    claim = backend.claim

    async def counted_claim(*args: Any) -> Any:
        nonlocal looks
        looks += 1
        return await claim(*args)

    backend.claim = counted_claim  # type: ignore[method-assign]
    queue = Queue("polled", backend=backend)
    await start_worker(queue.worker(handle_signals=False))
    await asyncio.sleep(3)
    # Backing off from 20 ms to `poll_max_s` (1 s): about nine looks in three seconds.
    assert 3 <= looks <= 12, f"an idle worker looked {looks} times in 3 s"

    job_id = await Queue("polled", backend=producer).add(double.name, args=[21])
    deadline = time.monotonic() + WAIT_S
    while (job := await queue.get_job(job_id)).status is not JobState.COMPLETED:
        assert time.monotonic() < deadline, "the polling worker never found the new job"
        await asyncio.sleep(0.05)
    assert job.result == 42


async def test_a_claim_of_a_hundred_jobs_takes_three_round_trips(backend: MongoBackend) -> None:
    queue = Queue("batched", backend=backend)
    await queue.add_bulk([{"task_id": double.name, "args": [n]} for n in range(150)])
    claimed = await backend.claim("batched", "w1", 100, 30, time.time(), None)
    assert len(claimed.jobs) == 100
    assert [job.args[0] for job in claimed.jobs] == list(range(100))  # in line order
    # Flags (paused?), the first 100 in line, one update taking them all.
    assert backend.operation_counts["claim"] == 3
    assert await backend.finish([_completed(job) for job in claimed.jobs], queue.retention) == [True] * 100
    assert backend.operation_counts["finish"] == 1  # one bulk write


def _completed(job: Any) -> Any:
    job.status, job.finished_at, job.result = JobState.COMPLETED, time.time(), 1
    return job


async def test_counts_live_in_shard_documents_and_a_recount_repairs_them(
    backend: MongoBackend, client: AsyncMongoClient[Any], database: str
) -> None:
    queue = Queue("counted", backend=backend)
    await queue.add_bulk([{"task_id": double.name, "args": [n]} for n in range(5)])
    await queue.add(double.name, args=[9], delay=60)
    await backend.counts_writer.settle()
    queues = client[database]["queues"]
    shards = await queues.find({"queue": "counted", "_id": {"$regex": "#c"}}).to_list(None)
    assert sum(doc.get("waiting", 0) for doc in shards) == 5
    assert sum(doc.get("delayed", 0) for doc in shards) == 1

    # A process killed between a job write and its count leaves the count off...
    await queues.update_one({"_id": shards[0]["_id"]}, {"$inc": {"waiting": 3}})
    assert (await queue.counts())["waiting"] == 8
    await backend.recount("counted")  # ...until a recount, from the jobs themselves
    assert await queue.counts() == counts(waiting=5, delayed=1)


async def test_a_finished_job_carries_the_date_its_ttl_index_deletes_it_at(
    backend: MongoBackend, client: AsyncMongoClient[Any], database: str
) -> None:
    queue = Queue("expiring", backend=backend, result_ttl=3600)
    job_id = await queue.add(double.name, args=[1])
    await queue.worker(burst=True, handle_signals=False).run()
    jobs = client[database]["jobs"]
    stored = await jobs.find_one({"_id": f"expiring/{job_id}"})
    job = await queue.get_job(job_id)
    assert job.finished_at is not None
    assert abs(stored["expire_at"].timestamp() - (job.finished_at + 3600)) < 0.002  # BSON dates: ms
    indexes = await jobs.index_information()
    assert any(
        index["key"] == [("expire_at", 1)] and index.get("expireAfterSeconds") == 0
        for index in indexes.values()
    )


async def test_a_document_no_worker_can_read_fails_at_once_with_the_reason(
    backend: MongoBackend, client: AsyncMongoClient[Any], database: str
) -> None:
    queue = Queue("garbled", backend=backend)
    job_id = await queue.add(double.name, args=[1])
    await client[database]["jobs"].update_one({"_id": f"garbled/{job_id}"}, {"$set": {"args": "{not json"}})

    claimed = await backend.claim("garbled", "w1", 10, 30, time.time(), None)
    assert claimed.jobs == []
    assert [job.id for job in claimed.unreadable] == [job_id]
    assert await backend.fail_unreadable(claimed.unreadable, time.time(), queue.retention) == [True]
    stored = await client[database]["jobs"].find_one({"_id": f"garbled/{job_id}"})
    assert stored["status"] == "failed"
    assert MalformedJobError.__name__ in stored["error"]
    assert (await queue.counts())["active"] == 0


def test_the_readmes_example_builds_the_backend_it_describes() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme.split("### MongoDB", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    scope: dict[str, Any] = {}
    exec(code, scope)  # builds the backend; it connects at first use
    backend = scope["backend"]
    assert isinstance(backend, MongoBackend)
    assert (backend.database_name, backend.max_connections) == ("asyncmq", 20)


async def test_stall_recovery_fails_a_document_whose_counter_was_garbled_while_it_ran(
    backend: MongoBackend, client: AsyncMongoClient[Any], database: str
) -> None:
    queue = Queue("garbled-stalls", backend=backend)
    job_id = await queue.add(double.name, args=[1])
    now = time.time()
    assert len((await backend.claim("garbled-stalls", "w1", 1, 30, now, None)).jobs) == 1
    await client[database]["jobs"].update_one({"_id": f"garbled-stalls/{job_id}"}, {"$set": {"stalls": "x"}})

    (recovered,) = await backend.recover_stalled(
        "garbled-stalls", now + 60, stall_recovery(3, queue.retention)
    )

    assert (recovered.id, recovered.status) == (job_id, "failed")
    assert "malformed stalls" in recovered.error["message"]
    stored = await client[database]["jobs"].find_one({"_id": f"garbled-stalls/{job_id}"})
    assert (stored["status"], stored["stalls"]) == ("failed", "x")
    assert (await queue.counts())["active"] == 0


@contextlib.asynccontextmanager
async def _replies_lost(
    backend: MongoBackend, late_s: float = 0, method: str = "bulk_write"
) -> AsyncIterator[None]:
    """The backend's next job writes by `method` lose their reply: the caller hears at once
    that the connection dropped, and the server applies the write `late_s` later, as a server
    still busy with a request from a closed connection does. Exits once they landed."""
    collection = backend.jobs
    landed: list[asyncio.Future[Any]] = []

    def write(*args: Any, **options: Any) -> Any:
        async def land() -> Any:
            await asyncio.sleep(late_s)
            return await getattr(collection, method)(*args, **options)

        async def lost() -> Any:
            raise AutoReconnect("connection closed")

        landed.append(asyncio.ensure_future(land()))
        return lost()

    class RepliesLost:
        def __getattr__(self, name: str) -> Any:
            return write if name == method else getattr(collection, name)

    backend.jobs = RepliesLost()
    try:
        with pytest.raises(AutoReconnect):
            yield
    finally:
        backend.jobs = collection
    await asyncio.gather(*landed)


async def test_outcomes_whose_reply_was_lost_are_counted_once_they_land_late(backend: MongoBackend) -> None:
    queue = Queue("late", backend=backend)
    await queue.add_bulk([{"task_id": double.name, "args": [n]} for n in range(5)])
    claimed = await backend.claim("late", "w1", 5, 30, time.time(), None)
    async with _replies_lost(backend, late_s=0.3):
        await backend.finish([_completed(job) for job in claimed.jobs], queue.retention)
    await backend.counts_writer.settle()
    assert await queue.counts() == counts(completed=5)


async def test_a_recovery_whose_reply_was_lost_is_counted_though_its_jobs_ran_again_since(
    backend: MongoBackend,
) -> None:
    """The jobs a lost recovery moved are found by its stamp, which the claim and the outcome
    that follow at once must not erase."""
    queue = Queue("recovered-late", backend=backend)
    await queue.add_bulk([{"task_id": double.name, "args": [n]} for n in range(3)])
    await backend.claim("recovered-late", "w1", 3, 0.01, time.time(), None)
    await asyncio.sleep(0.05)  # the lease runs out
    async with _replies_lost(backend, late_s=0):
        await backend.recover_stalled("recovered-late", time.time(), stall_recovery(3, queue.retention))
    again = await backend.claim("recovered-late", "w2", 3, 30, time.time(), None)
    assert len(again.jobs) == 3
    await backend.finish([_completed(job) for job in again.jobs], queue.retention)
    await backend.counts_writer.settle()
    assert await queue.counts() == counts(completed=3)


async def test_a_result_waiter_is_woken_by_another_process_finishing_the_job_through_a_change_stream(
    make_backend: MakeBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    from asyncmq import results

    monkeypatch.setattr(results, "_FIRST_POLL_S", 600.0)  # only a wake-up can end the wait in time
    monkeypatch.setattr(results, "_MAX_POLL_S", 600.0)
    waiting_side, worker_side = await make_backend(), await make_backend()
    read, get_job = asyncio.Event(), waiting_side.get_job

    async def read_and_tell(queue: str, job_id: str) -> Any:
        job = await get_job(queue, job_id)
        read.set()
        return job

    monkeypatch.setattr(waiting_side, "get_job", read_and_tell)
    job_id = await Queue("awaited", backend=waiting_side).add(double.name, args=[21])
    waiter = asyncio.create_task(Queue("awaited", backend=waiting_side).result(job_id))
    await asyncio.wait_for(read.wait(), WAIT_S)  # it saw the job waiting, and waits
    assert "r:awaited/" + job_id in waiting_side.waker.watches

    await Queue("awaited", backend=worker_side).worker(burst=True, handle_signals=False).run()
    assert await asyncio.wait_for(waiter, WAIT_S) == 42
    assert waiting_side.waker.change_streams is True
    assert not waiting_side.waker.watches
    assert "jobs" not in waiting_side.waker._watching  # the jobs' stream closed with its last waiter


async def test_totals_of_tasks_named_with_dots_and_dollars_are_kept_past_a_recount_and_go_with_the_queue(
    backend: MongoBackend, client: AsyncMongoClient[Any], database: str
) -> None:
    queue = Queue("totalled", backend=backend)
    names = ["a.b", "$c", "100%.x", "%2E", "ü.$"]
    await queue.store([queue.build_job(name) for name in names])
    claimed = await backend.claim("totalled", "w1", 10, 30, time.time(), None)
    assert len(claimed.jobs) == len(names)
    expected = {name: {"enqueued": 1, "claimed": 1} for name in names}
    assert (await queue.stats()).totals == expected
    queues = client[database]["queues"]
    (shard,) = await queues.find({"queue": "totalled", "_id": {"$regex": "#c"}}).to_list(None)
    assert (shard["t:enqueued:a%2Eb"], shard["t:claimed:%252E"]) == (1, 1)  # flat, escaped
    assert not any("." in name or "$" in name for name in shard)

    await backend.recount("totalled")  # the live counts again from the jobs; the totals stay
    stats = await queue.stats()
    assert (stats.counts["active"], stats.totals) == (len(names), expected)

    await backend.delete_queue("totalled")
    assert (await queue.stats()).totals == {}
    assert await queues.count_documents({"queue": "totalled"}) == 0


async def test_a_claim_and_outcomes_whose_replies_were_lost_add_to_the_totals_once(
    backend: MongoBackend,
) -> None:
    queue = Queue("lost-replies", backend=backend)
    await queue.add_bulk([{"task_id": double.name, "args": [n]} for n in range(3)])
    async with _replies_lost(backend, method="update_many"):
        await backend.claim("lost-replies", "w1", 10, 30, time.time(), None)
    active = await queue.list_jobs(JobState.ACTIVE)
    async with _replies_lost(backend):
        await backend.finish([_completed(job) for job in active], queue.retention)
    # Sent again (as a worker does): refused as stored already, and counted once, not twice.
    assert await backend.finish(active, queue.retention) == [True] * 3

    await backend.counts_writer.settle()
    stats = await queue.stats()
    assert (stats.counts["active"], stats.counts["completed"]) == (0, 3)
    assert stats.totals == {double.name: {"enqueued": 3, "claimed": 3, "completed": 3}}
