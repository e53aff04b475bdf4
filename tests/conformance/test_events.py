"""The lifecycle events' payloads (docs/observability.md, section 1) and progress reporting."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

import asyncmq
from asyncmq import Backoff, JobState, Queue
from tests.conformance.support import WAIT_S, EventRecorder, gate

JOB_EVENTS = frozenset(
    {
        "job:enqueued",
        "job:delayed",
        "job:started",
        "job:progress",
        "job:completed",
        "job:retried",
        "job:failed",
        "job:expired",
        "job:cancelled",
        "job:stalled",
    }
)
#: The statuses each event may report.
STATUSES = {
    "job:enqueued": {"waiting"},
    "job:delayed": {"delayed"},
    "job:started": {"active"},
    "job:progress": {"active"},
    "job:completed": {"completed"},
    "job:retried": {"waiting", "delayed"},
    "job:failed": {"failed"},
    "job:expired": {"expired"},
    "job:cancelled": {"cancelled"},
    "job:stalled": {"waiting", "failed"},
}


@asyncmq.task
async def report_steps(steps: int) -> str:
    for done in range(1, steps + 1):
        await asyncmq.report_progress({"done": done, "total": steps})
    return "reported"


@asyncmq.task
async def report_then_hold(key: str) -> str:
    await asyncmq.report_progress(50)
    return await gate(key).hold()


@asyncmq.task
async def always_fail() -> None:
    raise ValueError("boom")


async def _every_kind_of_job_event(queue: Queue) -> None:
    """Drive jobs through every lifecycle event."""
    worker = queue.worker()
    await queue.add(report_steps.name, args=[1])
    await worker.process()  # enqueued, started, progress, completed
    failing = await queue.add(always_fail.name, retries=1, backoff=Backoff.fixed(30), delay=60)
    await worker.scheduler.tick((await queue.get_job(failing)).delay_until)  # delayed, then promoted
    await worker.process()  # started, retried, delayed
    await worker.scheduler.tick((await queue.get_job(failing)).delay_until)
    await worker.process()  # started, failed
    expired = queue.build_job(report_steps.name, args=[1], ttl=1, now=time.time() - 2)
    await queue.backend.enqueue([expired])
    await worker.process()  # expired
    await queue.cancel(await queue.add(report_steps.name, args=[1]))  # cancelled
    await queue.add(report_steps.name, args=[1])
    now = time.time()
    await queue.backend.claim(queue.name, "vanished-worker", 1, 0.05, now, None)
    await worker.scheduler.tick(now + 1)  # stalled


async def test_every_job_event_payload_carries_the_contract_fields(
    queue: Queue, events: EventRecorder
) -> None:
    await _every_kind_of_job_event(queue)

    job_events = [(event.value, payload) for event, payload in events.records if event.value in JOB_EVENTS]
    assert {name for name, _ in job_events} == JOB_EVENTS
    for name, payload in job_events:
        assert isinstance(payload["id"], str), name
        assert payload["queue"] == queue.name, name
        assert payload["task"] in {report_steps.name, always_fail.name}, name
        assert payload["status"] in STATUSES[name], name
        assert isinstance(payload["attempt"], int), name
        assert payload["attempt"] >= 1, name
        assert isinstance(payload["max_retries"], int), name
        assert payload["priority"] == 5, name
        timestamps = payload["timestamps"]
        assert isinstance(timestamps["created_at"], float), name
        assert all(isinstance(value, float) for value in timestamps.values()), name
        moments = [
            timestamps[key] for key in ("created_at", "started_at", "finished_at") if key in timestamps
        ]
        assert moments == sorted(moments), name
        if name in ("job:retried", "job:failed"):
            assert payload["error"] == {"type": "ValueError", "message": "boom"}, name


async def test_event_timestamps_hold_every_moment_known_so_far(queue: Queue, events: EventRecorder) -> None:
    job_id = await queue.add(report_steps.name, args=[1])
    await queue.worker().process()

    def keys(name: str) -> list[set[str]]:
        return [set(payload["timestamps"]) for payload in events.of(name, job_id)]

    assert keys("job:enqueued") == [{"created_at", "ready_at"}]
    assert keys("job:started") == [{"created_at", "ready_at", "started_at"}]
    assert keys("job:progress") == [{"created_at", "ready_at", "started_at", "progress_at"}]
    assert keys("job:completed") == [{"created_at", "ready_at", "started_at", "finished_at"}]
    [enqueued], [completed] = events.of("job:enqueued", job_id), events.of("job:completed", job_id)
    assert enqueued["timestamps"]["ready_at"] == enqueued["timestamps"]["created_at"]
    job = await queue.get_job(job_id)
    assert completed["timestamps"] == {
        "created_at": job.created_at,
        "ready_at": job.ready_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
    }


async def test_a_delayed_and_retried_jobs_events_carry_its_due_times(
    queue: Queue, events: EventRecorder
) -> None:
    job_id = await queue.add(always_fail.name, retries=1, backoff=Backoff.fixed(30), delay=60)
    worker = queue.worker()
    first_due = (await queue.get_job(job_id)).delay_until
    assert first_due is not None
    await worker.scheduler.tick(first_due)
    await worker.process()
    retry_due = (await queue.get_job(job_id)).delay_until
    assert retry_due is not None
    await worker.scheduler.tick(retry_due)
    await worker.process()

    def timestamps(name: str) -> list[dict[str, Any]]:
        return [payload["timestamps"] for payload in events.of(name, job_id)]

    [delayed, retry_delayed] = timestamps("job:delayed")
    assert set(delayed) == {"created_at", "delay_until"}
    assert delayed["delay_until"] == delayed["created_at"] + 60
    [first_start, second_start] = timestamps("job:started")
    assert set(first_start) == {"created_at", "delay_until", "ready_at", "started_at"}
    assert (first_start["delay_until"], first_start["ready_at"]) == (first_due, first_due)
    [retried] = timestamps("job:retried")
    assert retried == retry_delayed
    assert set(retried) == {"created_at", "delay_until", "started_at", "finished_at"}
    assert retried["delay_until"] == retry_due
    assert (second_start["delay_until"], second_start["ready_at"]) == (retry_due, retry_due)
    [failed] = timestamps("job:failed")
    assert set(failed) == {"created_at", "delay_until", "ready_at", "started_at", "finished_at"}


async def test_retried_and_failed_events_carry_the_error_type_and_message(
    queue: Queue, events: EventRecorder
) -> None:
    job_id = await queue.add(always_fail.name, retries=1)
    worker = queue.worker()
    await worker.process()
    await worker.process()

    [retried] = events.of("job:retried", job_id)
    [failed] = events.of("job:failed", job_id)
    assert (retried["attempt"], retried["max_retries"], retried["status"]) == (1, 1, "waiting")
    assert (failed["attempt"], failed["max_retries"], failed["status"]) == (2, 1, "failed")
    assert retried["error"] == failed["error"] == {"type": "ValueError", "message": "boom"}
    stored = (await queue.get_job(job_id)).error
    assert stored is not None
    assert "Traceback" in stored["traceback"]  # kept on the job, never sent in events


async def test_reported_progress_is_stored_and_emitted_as_job_progress(
    queue: Queue, events: EventRecorder
) -> None:
    job_id = await queue.add(report_steps.name, args=[3])

    await queue.worker().process()

    progress = events.of("job:progress", job_id)
    assert [p["progress"] for p in progress] == [{"done": n, "total": 3} for n in (1, 2, 3)]
    assert [p["status"] for p in progress] == ["active"] * 3
    assert all(p["timestamps"]["started_at"] <= p["timestamps"]["progress_at"] for p in progress)
    job = await queue.get_job(job_id)
    assert (job.progress, job.result) == ({"done": 3, "total": 3}, "reported")


async def test_progress_is_readable_while_the_job_still_runs(queue: Queue, events: EventRecorder) -> None:
    job_id = await queue.add(report_then_hold.name, args=[queue.name])
    running = asyncio.create_task(queue.worker().process())
    await events.wait("job:progress", job_id=job_id)

    job = await queue.get_job(job_id)
    assert (job.status, job.progress) == (JobState.ACTIVE, 50)

    gate(queue.name).opened.set()
    assert await asyncio.wait_for(running, WAIT_S) is True
    assert (await queue.get_job(job_id)).progress == 50


async def test_reporting_progress_outside_a_task_raises() -> None:
    with pytest.raises(RuntimeError, match="only available inside a task"):
        await asyncmq.report_progress(1)
