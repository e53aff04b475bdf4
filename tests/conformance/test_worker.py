"""What a task does can fail its job, never the worker: sync tasks, exceptions, unknown tasks,
results that cannot be stored."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

import asyncmq
from asyncmq import JobState, Queue
from asyncmq.errors import NonRetryableError
from tests.conformance.support import WAIT_S, EventRecorder, StartWorker, counts

#: Released by the test while a sync task waits in its thread.
SYNC_GATES: dict[str, threading.Event] = {}
ERRORS: dict[str, BaseException] = {
    "ValueError": ValueError("bad input"),
    "NonRetryableError": NonRetryableError("never again"),
    "CancelledError": asyncio.CancelledError("gave up waiting"),
}


@asyncmq.task
def sync_wait(key: str) -> dict[str, Any]:
    released = SYNC_GATES[key].wait(timeout=WAIT_S)
    return {"thread": threading.get_ident(), "released": released, "job": asyncmq.current_job().job.id}


@asyncmq.task
async def raise_error(kind: str) -> None:
    raise ERRORS[kind]


@asyncmq.task
async def noop() -> str:
    return "ok"


@asyncmq.task
async def unserializable() -> object:
    return object()


async def _run_until_empty(queue: Queue) -> None:
    await asyncio.wait_for(queue.worker(burst=True, concurrency=1, handle_signals=False).run(), WAIT_S)


async def test_a_sync_task_runs_in_a_thread_without_blocking_the_event_loop(
    queue: Queue, events: EventRecorder, start_worker: StartWorker
) -> None:
    SYNC_GATES[queue.name] = threading.Event()
    await start_worker(queue.worker(handle_signals=False))
    job_id = await queue.add(sync_wait.name, args=[queue.name])
    await events.wait("job:started", job_id=job_id)

    SYNC_GATES[queue.name].set()  # the loop runs while the task blocks its thread
    await events.wait("job:completed", job_id=job_id)

    result = (await queue.get_job(job_id)).result
    assert result == {"thread": result["thread"], "released": True, "job": job_id}
    assert result["thread"] != threading.get_ident()


@pytest.mark.parametrize("kind", sorted(ERRORS))
async def test_a_task_raising_never_kills_the_worker(queue: Queue, events: EventRecorder, kind: str) -> None:
    failing = await queue.add(raise_error.name, args=[kind])
    following = await queue.add(noop.name)

    await _run_until_empty(queue)

    assert await queue.counts() == counts(failed=1, completed=1)
    [failed] = events.of("job:failed", failing)
    assert failed["error"] == {"type": kind, "message": str(ERRORS[kind])}
    assert (await queue.get_job(following)).result == "ok"


async def test_an_unknown_task_fails_its_job_with_a_message_naming_it(
    queue: Queue, events: EventRecorder
) -> None:
    missing = f"{__name__}.no_such_task"
    job_id = await queue.add(missing, retries=3)
    following = await queue.add(noop.name)

    await _run_until_empty(queue)

    job = await queue.get_job(job_id)
    assert (job.status, job.attempt) == (JobState.FAILED, 1)
    assert job.error is not None
    assert job.error["type"] == "UnknownTaskError"
    assert job.error["message"].startswith(f"no task {missing!r} is registered in this worker")
    assert events.names(job_id) == ["job:enqueued", "job:started", "job:failed"]
    assert (await queue.get_job(following)).status is JobState.COMPLETED


async def test_a_result_that_cannot_be_serialized_fails_the_job_and_the_worker_goes_on(
    queue: Queue, events: EventRecorder
) -> None:
    job_id = await queue.add(unserializable.name, retries=2)
    following = await queue.add(noop.name)

    await _run_until_empty(queue)

    job = await queue.get_job(job_id)
    assert (job.status, job.attempt, job.result) == (JobState.FAILED, 1, None)
    assert job.error is not None
    assert job.error["type"] == "ResultSerializationError"
    assert job.error["message"].startswith(
        f"task {unserializable.name!r} returned a object that cannot be serialized"
    )
    assert (await queue.get_job(following)).status is JobState.COMPLETED
