"""Adding jobs: one, in bulk, through a task, and deduplicated by job id."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import pytest

import asyncmq
from asyncmq import Backoff, JobState, Queue
from asyncmq.backends.base import BaseBackend
from asyncmq.errors import InvalidJobError
from asyncmq.job import Job
from tests.conformance.support import EventRecorder, counts


@asyncmq.task
async def add(a: int, b: int) -> int:
    return a + b


@asyncmq.task(retries=2, timeout=30, priority=7)
async def configured(x: int) -> int:
    return x


ADD = add.name


@pytest.fixture
def enqueue_calls(backend: BaseBackend, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The size of each batch passed to `backend.enqueue`, one entry per call."""
    calls: list[int] = []
    original = backend.enqueue

    async def counting(jobs: Sequence[Job], *, connection: object = None) -> list[bool]:
        calls.append(len(jobs))
        return await original(jobs, connection=connection)

    monkeypatch.setattr(backend, "enqueue", counting)
    return calls


async def test_an_added_job_is_stored_waiting_with_its_arguments(queue: Queue, events: EventRecorder) -> None:
    job_id = await queue.add(ADD, args=[1, 2], priority=3)

    job = await queue.get_job(job_id)
    assert job.status is JobState.WAITING
    assert (job.queue, job.task, job.args, job.kwargs) == (queue.name, ADD, [1, 2], {})
    assert (job.priority, job.attempt, job.max_retries) == (3, 0, 0)
    assert job.ready_at == job.created_at
    assert await queue.counts() == counts(waiting=1)
    assert [payload["id"] for payload in events.of("job:enqueued")] == [job_id]


async def test_a_job_runs_once_and_its_result_is_stored(queue: Queue, events: EventRecorder) -> None:
    job_id = await queue.add(ADD, kwargs={"a": 2, "b": 3})
    worker = queue.worker()

    assert await worker.process() is True
    assert await worker.process() is False

    job = await queue.get_job(job_id)
    assert (job.status, job.result, job.attempt, job.error) == (JobState.COMPLETED, 5, 1, None)
    assert job.started_at is not None
    assert job.finished_at is not None
    assert job.created_at <= job.started_at <= job.finished_at
    assert await queue.counts() == counts(completed=1)
    assert events.names(job_id) == ["job:enqueued", "job:started", "job:completed"]


async def test_add_bulk_stores_every_job_in_one_backend_call(
    queue: Queue, events: EventRecorder, enqueue_calls: list[int]
) -> None:
    ids = await queue.add_bulk(
        [
            {"task_id": ADD, "args": [1, 2]},
            {"task_id": ADD, "args": [3, 4], "priority": 1},
            {"task_id": ADD, "args": [5, 6], "delay": 60},
        ]
    )

    assert enqueue_calls == [3]
    assert len(set(ids)) == 3
    assert await queue.counts() == counts(waiting=2, delayed=1)
    assert [payload["id"] for payload in events.of("job:enqueued")] == ids[:2]
    assert [payload["id"] for payload in events.of("job:delayed")] == [ids[2]]
    worker = queue.worker()
    assert [await worker.process(), await worker.process(), await worker.process()] == [True, True, False]
    assert [(await queue.get_job(job_id)).result for job_id in ids[:2]] == [3, 7]


async def test_add_bulk_with_one_bad_entry_stores_nothing(
    queue: Queue, events: EventRecorder, enqueue_calls: list[int]
) -> None:
    with pytest.raises(InvalidJobError, match=r"add_bulk entry 1 got unknown options \[.colour.\]"):
        await queue.add_bulk([{"task_id": ADD, "args": [1, 2]}, {"task_id": ADD, "colour": "red"}])

    assert enqueue_calls == []
    assert await queue.counts() == counts()
    assert events.records == []


async def test_a_task_enqueues_with_its_registered_options(queue: Queue) -> None:
    job_id = await configured.options(queue=queue.name).enqueue(queue.backend, 4)

    job = await queue.get_job(job_id)
    assert (job.task, job.args, job.kwargs) == (configured.name, [4], {})
    assert (job.max_retries, job.timeout_s, job.priority) == (2, 30.0, 7)
    assert job.backoff == Backoff.exponential().to_spec()


async def test_adding_an_existing_job_id_stores_nothing_and_logs_it(
    queue: Queue, events: EventRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="asyncmq")

    first = await queue.add(ADD, args=[1, 2], job_id="order-42")
    second = await queue.add(ADD, args=[5, 5], job_id="order-42")

    assert first == second == "order-42"
    assert (await queue.get_job("order-42")).args == [1, 2]
    assert await queue.counts() == counts(waiting=1)
    assert [payload["id"] for payload in events.of("job:enqueued")] == ["order-42"]
    assert caplog.messages == [f"job 'order-42' already exists in queue {queue.name!r}: nothing added"]


async def test_a_job_id_stays_taken_while_its_finished_job_is_kept(
    queue: Queue, events: EventRecorder
) -> None:
    await queue.add(ADD, args=[1, 2], job_id="report-7")
    assert await queue.worker().process() is True

    await queue.add(ADD, args=[1, 2], job_id="report-7")

    assert await queue.counts() == counts(completed=1)
    assert events.names("report-7") == ["job:enqueued", "job:started", "job:completed"]
