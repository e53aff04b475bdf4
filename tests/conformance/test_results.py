"""`Queue.result` and the `JobId` that `add` returns: a completed job's result, the error of
one that ended without, and a waiter woken by the backend when the job ends, not by a poll."""

from __future__ import annotations

import asyncio
import copy
import json
import pickle
import time
from datetime import timedelta
from typing import Any

import orjson
import pytest

import asyncmq
from asyncmq import Queue, results
from asyncmq.backends.base import BaseBackend
from asyncmq.errors import (
    JobCancelledError,
    JobExpiredError,
    JobFailedError,
    JobGoneError,
    JobNotFoundError,
    JobResultError,
)
from asyncmq.job import Job
from asyncmq.results import JobId
from tests.conformance.support import WAIT_S


@asyncmq.task(queue="results")
async def add_up(a: int, b: int) -> dict[str, int]:
    return {"sum": a + b}


@asyncmq.task(queue="results")
async def refuse(value: str) -> None:
    raise ValueError(f"bad input: {value}")


async def _drain(queue: Queue) -> None:
    await asyncio.wait_for(queue.worker(burst=True, handle_signals=False).run(), WAIT_S)


class _Reads:
    """Counts the waiter's reads of the job, and lets the test wait for the next one."""

    def __init__(self, backend: BaseBackend, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        self.happened = asyncio.Event()
        read = backend.get_job

        async def counted(queue: str, job_id: str) -> Job | None:
            job = await read(queue, job_id)
            self.count += 1
            self.happened.set()
            return job

        monkeypatch.setattr(backend, "get_job", counted)

    async def next(self) -> None:
        await asyncio.wait_for(self.happened.wait(), WAIT_S)
        self.happened.clear()


@pytest.fixture
def slow_poll(monkeypatch: pytest.MonkeyPatch) -> None:
    """The waiter's safety-net poll made far longer than any test waits: a waiter that
    returns in time was woken by the backend."""
    monkeypatch.setattr(results, "_FIRST_POLL_S", 600.0)
    monkeypatch.setattr(results, "_MAX_POLL_S", 600.0)


async def test_the_result_of_a_completed_job(queue: Queue) -> None:
    job_id = await queue.add(add_up.name, args=[2, 3])
    assert await queue.get_job_result(job_id) is None  # not completed yet
    await _drain(queue)

    assert await queue.result(job_id) == {"sum": 5}
    assert await queue.result(str(job_id), timeout=timedelta(seconds=WAIT_S)) == {"sum": 5}
    assert await job_id.result(timeout=WAIT_S) == {"sum": 5}
    assert await queue.get_job_result(job_id) == {"sum": 5}


async def test_a_failed_job_raises_its_tasks_error_type_and_message(queue: Queue) -> None:
    job_id = await queue.add(refuse.name, args=["x"])
    await _drain(queue)

    with pytest.raises(JobFailedError) as failed:
        await queue.result(job_id, timeout=WAIT_S)
    error = failed.value
    assert (error.error_type, error.error_message) == ("ValueError", "bad input: x")
    assert (error.job_id, error.queue, error.state) == (job_id, queue.name, "failed")
    assert str(error) == f"job {job_id} of queue {queue.name!r} failed: ValueError: bad input: x"
    assert "bad input: x" in (error.traceback or "")
    assert await queue.get_job_result(job_id) is None


async def test_an_expired_job_raises_job_expired(queue: Queue) -> None:
    job = queue.build_job(add_up.name, [1, 1], ttl=1, now=time.time() - 60)  # its ttl long over
    await queue.store([job])
    await _drain(queue)

    with pytest.raises(JobExpiredError, match=f"job {job.id} of queue '{queue.name}' expired") as expired:
        await queue.result(job.id, timeout=WAIT_S)
    assert (expired.value.job_id, expired.value.state) == (job.id, "expired")


async def test_a_waiter_is_woken_by_the_cancellation_of_its_job(
    queue: Queue, backend: BaseBackend, monkeypatch: pytest.MonkeyPatch, slow_poll: None
) -> None:
    job_id = await queue.add(add_up.name, args=[1, 1], delay=600)
    reads = _Reads(backend, monkeypatch)
    waiter = asyncio.create_task(queue.result(job_id))
    await reads.next()  # it saw the job delayed, and waits

    assert await queue.cancel(job_id)
    with pytest.raises(JobCancelledError, match="was cancelled") as cancelled:
        await asyncio.wait_for(waiter, WAIT_S)
    assert isinstance(cancelled.value, JobResultError)
    assert cancelled.value.state == "cancelled"


async def test_an_unknown_job_raises_job_not_found(queue: Queue) -> None:
    with pytest.raises(JobNotFoundError, match=f"no job 'nope' in queue '{queue.name}'") as missing:
        await queue.result("nope", timeout=WAIT_S)
    assert not isinstance(missing.value, JobGoneError)
    assert await queue.get_job_result("nope") is None


async def test_a_timeout_names_the_job_and_its_state(queue: Queue) -> None:
    job_id = await queue.add(add_up.name, args=[1, 1])
    with pytest.raises(TimeoutError, match=f"job {job_id} of queue '{queue.name}' .* it is waiting"):
        await queue.result(job_id, timeout=0.2)
    with pytest.raises(TimeoutError, match="it is waiting"):
        await job_id.result(timeout=timedelta(milliseconds=50))


async def test_a_job_deleted_while_waited_for_raises_job_gone(
    queue: Queue, backend: BaseBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = await queue.add(add_up.name, args=[1, 1], delay=600)
    reads = _Reads(backend, monkeypatch)
    waiter = asyncio.create_task(queue.result(str(job_id)))
    await reads.next()

    assert await queue.remove_job(job_id)
    with pytest.raises(JobGoneError, match="is gone: it was removed"):
        await asyncio.wait_for(waiter, WAIT_S)


async def test_a_result_deleted_by_retention_is_reported_gone(make_queue: Any) -> None:
    queue = make_queue(keep_finished=1)  # a finished job is deleted when the next one finishes
    job_id = await queue.add(add_up.name, args=[1, 1])
    await _drain(queue)
    await queue.add(add_up.name, args=[2, 2])
    await _drain(queue)

    with pytest.raises(JobGoneError, match="result_ttl, keep_finished") as gone:
        await job_id.result(timeout=WAIT_S)  # this id was added: it existed
    assert isinstance(gone.value, JobNotFoundError)
    with pytest.raises(JobNotFoundError):  # a bare id: never added, or gone
        await queue.result(str(job_id), timeout=WAIT_S)


async def test_a_waiter_started_before_the_worker_is_woken_when_the_job_completes(
    queue: Queue,
    backend: BaseBackend,
    monkeypatch: pytest.MonkeyPatch,
    slow_poll: None,
) -> None:
    job_id = await queue.add(add_up.name, args=[20, 22])
    reads = _Reads(backend, monkeypatch)
    waiter = asyncio.create_task(job_id.result())
    await reads.next()  # it read the job waiting, and waits on a 600 s poll
    assert not waiter.done()

    await _drain(queue)
    assert await asyncio.wait_for(waiter, WAIT_S) == {"sum": 42}
    assert reads.count <= 3  # the first look, the one the wake-up caused (and one spare)


async def test_many_waiters_of_one_job_and_of_others_are_each_woken(queue: Queue, slow_poll: None) -> None:
    ids = await queue.add_bulk([{"task_id": add_up.name, "args": [n, n]} for n in range(5)])
    waiters = [asyncio.create_task(job_id.result()) for job_id in ids for _ in range(2)]
    await asyncio.sleep(0)  # each has started watching (or will read the job done)

    await _drain(queue)
    done = await asyncio.wait_for(asyncio.gather(*waiters), WAIT_S)
    assert done == [{"sum": 2 * n} for n in range(5) for _ in range(2)]


async def test_a_failing_job_wakes_its_waiter_with_the_error(queue: Queue, slow_poll: None) -> None:
    job_id = await refuse.options(queue=queue.name).enqueue(queue.backend, "late")
    waiter = asyncio.create_task(job_id.result())
    await asyncio.sleep(0)
    await _drain(queue)
    with pytest.raises(JobFailedError, match="ValueError: bad input: late"):
        await asyncio.wait_for(waiter, WAIT_S)


async def test_a_job_id_is_the_plain_id_string_everywhere(queue: Queue) -> None:
    job_id = await queue.add(add_up.name, args=[1, 2], job_id="job-1")
    [bulk_id] = await queue.add_bulk([{"task_id": add_up.name, "args": [3, 4]}])
    plain = "job-1"

    assert isinstance(job_id, str)
    assert [type(job_id), type(bulk_id)] == [JobId, JobId]
    assert (job_id, hash(job_id), {job_id: 1}[plain]) == (plain, hash(plain), 1)
    assert (str(job_id), repr(job_id), f"{job_id:>5}") == (plain, repr(plain), plain)
    assert orjson.dumps({"id": job_id}) == orjson.dumps({"id": plain}) == b'{"id":"job-1"}'
    assert json.dumps([job_id]) == '["job-1"]'
    for copied in (pickle.loads(pickle.dumps(job_id)), copy.copy(job_id), copy.deepcopy(job_id)):
        assert (type(copied), copied) == (str, plain)
    assert job_id.queue is queue
    assert (await queue.get_job(job_id)).id == plain


async def test_a_tasks_enqueue_returns_a_job_id_that_knows_its_queue(backend: BaseBackend) -> None:
    job_id = await add_up.enqueue(backend, 4, 5)
    bound_id = await add_up.options(priority=1).enqueue(backend, 5, 6)
    assert [type(job_id), type(bound_id)] == [JobId, JobId]
    assert (job_id.queue.name, job_id.queue.backend) == ("results", backend)

    queue = Queue("results", backend=backend)
    try:
        await _drain(queue)
        assert await job_id.result(timeout=WAIT_S) == {"sum": 9}
        assert await bound_id.result(timeout=WAIT_S) == {"sum": 11}
    finally:
        await backend.delete_queue("results")
