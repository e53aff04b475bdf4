"""The event emitter: the seam every observer uses. It must never hurt a job."""

from __future__ import annotations

import asyncio
import logging

import pytest

from asyncmq.backends.memory import InMemoryBackend
from asyncmq.core.event import Event, EventEmitter, Payload
from asyncmq.core.hooks import JobHook
from asyncmq.core.seam import Seam, event_emitter, seam
from asyncmq.job import Job
from asyncmq.queues import Queue
from asyncmq.tasks import task


@task(queue="events")
async def ok() -> int:
    return 1


def test_sync_listeners_receive_the_payload_and_can_unsubscribe() -> None:
    emitter = EventEmitter()
    seen: list[Payload] = []
    emitter.on("job:started", seen.append)
    emitter.emit(Event.JOB_STARTED, {"id": "a"})
    emitter.off("job:started", seen.append)
    emitter.emit(Event.JOB_STARTED, {"id": "b"})
    assert seen == [{"id": "a"}]


def test_a_misspelt_event_name_fails_loudly() -> None:
    with pytest.raises(ValueError, match="'job:complete' is not a valid Event"):
        EventEmitter().on("job:complete", print)


async def test_async_listeners_run_as_tasks_and_can_be_drained() -> None:
    emitter = EventEmitter()
    seen: list[str] = []

    async def slow(payload: Payload) -> None:
        await asyncio.sleep(0.01)
        seen.append(payload["id"])

    emitter.on(Event.JOB_COMPLETED, slow)
    emitter.emit(Event.JOB_COMPLETED, {"id": "a"})
    assert seen == []
    await emitter.drain()
    assert seen == ["a"]


async def test_a_raising_listener_is_logged_and_counted_and_the_job_completes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(payload: Payload) -> None:
        raise RuntimeError("listener bug")

    async def broken_async(payload: Payload) -> None:
        raise RuntimeError("async listener bug")

    before = event_emitter.listener_errors["job:started"], event_emitter.listener_errors["job:completed"]
    event_emitter.on("job:started", broken)
    event_emitter.on("job:completed", broken_async)
    queue = Queue("events", backend=InMemoryBackend())
    await queue.add(ok.name)
    with caplog.at_level(logging.ERROR, logger="asyncmq"):
        await asyncio.wait_for(queue.run(burst=True), 10)
        await event_emitter.drain()
    assert (await queue.counts())["completed"] == 1
    after = event_emitter.listener_errors["job:started"], event_emitter.listener_errors["job:completed"]
    assert (after[0] - before[0], after[1] - before[1]) == (1, 1)
    assert "listener" in caplog.text
    assert "RuntimeError: listener bug" in caplog.text


async def test_a_slow_async_listener_never_holds_a_job_slot() -> None:
    release = asyncio.Event()

    async def stuck(payload: Payload) -> None:
        await release.wait()

    event_emitter.on("job:started", stuck)
    queue = Queue("events", backend=InMemoryBackend(), concurrency=1)
    for _ in range(5):
        await queue.add(ok.name)
    await asyncio.wait_for(queue.run(burst=True), 10)  # one slot, five jobs, listeners all stuck
    assert (await queue.counts())["completed"] == 5
    release.set()
    await event_emitter.drain()


async def test_batch_listeners_get_each_stored_batch_in_one_call_and_job_listeners_each_job() -> None:
    batches: list[list[str]] = []
    one_by_one: list[str] = []
    event_emitter.on_jobs(Event.JOB_ENQUEUED, lambda jobs: batches.append([job.id for job in jobs]))
    event_emitter.on_jobs(Event.JOB_COMPLETED, lambda jobs: batches.append([job.id for job in jobs]))
    event_emitter.on_job(Event.JOB_COMPLETED, lambda job: one_by_one.append(job.id))
    queue = Queue("events", backend=InMemoryBackend())
    ids = await queue.add_bulk([{"task_id": ok.name} for _ in range(20)])
    assert batches == [ids]  # one bulk add: one call
    await asyncio.wait_for(queue.run(burst=True), 10)
    completed = [job_id for batch in batches[1:] for job_id in batch]
    assert sorted(completed) == sorted(one_by_one) == sorted(ids)


def test_a_job_emitted_alone_reaches_batch_listeners_as_a_batch_of_one_and_failures_are_counted() -> None:
    emitter = EventEmitter()
    seen: list[int] = []

    def broken(jobs: object) -> None:
        raise RuntimeError("batch listener bug")

    emitter.on_jobs(Event.JOB_STARTED, lambda jobs: seen.append(len(jobs)))
    emitter.on_jobs(Event.JOB_STARTED, broken)
    job = Job(id="a", queue="events", task=ok.name)
    emitter.emit_job(Event.JOB_STARTED, job)
    emitter.emit_jobs(Event.JOB_STARTED, [job, job])
    emitter.emit_jobs(Event.JOB_STARTED, [])  # nothing happened: nobody is called
    assert seen == [1, 2]
    assert emitter.listener_errors["job:started"] == 2
    emitter.off_jobs(Event.JOB_STARTED, broken)
    emitter.emit_job(Event.JOB_STARTED, job)
    assert emitter.listener_errors["job:started"] == 2


async def test_one_seam_takes_every_kind_of_subscriber_and_reset_detaches_them_all() -> None:
    own = Seam()  # apart from the process's
    seen: list[str] = []

    def broken(payload: Payload) -> None:
        raise RuntimeError("listener bug")

    own.events.on(Event.QUEUE_PAUSED, broken)
    own.on_listener_error(lambda event: seen.append(f"error {event}"))
    own.on_operation(lambda backend, operation, s: seen.append(f"{backend} {operation}"))
    own.hooks.add(JobHook())
    own.events.emit(Event.QUEUE_PAUSED, {"queue": "q"})
    own.operation("redis", "claim", 0.001)
    assert seen == ["error queue:paused", "redis claim"]
    assert own.hooks.active is not None

    own.reset()

    own.events.emit(Event.QUEUE_PAUSED, {"queue": "q"})
    own.operation("redis", "claim", 0.001)
    assert seen == ["error queue:paused", "redis claim"]  # nobody is listening any more
    assert (own.hooks.active, own.operation_listeners) == (None, [])
    assert own.events.listener_errors == {}


async def test_a_backend_round_trip_reaches_the_process_seams_operation_listeners() -> None:
    calls: list[tuple[str, str]] = []
    seam.on_operation(lambda backend, operation, s: calls.append((backend, operation)))
    backend = InMemoryBackend()
    backend.record_operation("claim", 0.0)
    assert calls == [("memory", "claim")]
    assert backend.operation_counts["claim"] == 1
