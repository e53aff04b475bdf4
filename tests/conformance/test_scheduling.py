"""Jobs for later: delays and repeatables (`every=` and cron)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

import asyncmq
from asyncmq import JobState, Queue
from asyncmq.errors import InvalidScheduleError
from tests.conformance.support import WAIT_S, EventRecorder, StartWorker, counts

#: The occurrence ids each `record_run` ran, by its argument (the test's queue name).
RUNS: dict[str, list[str]] = {}


@asyncmq.task
async def noop() -> None:
    return None


@asyncmq.task
async def record_run(key: str) -> None:
    RUNS.setdefault(key, []).append(asyncmq.current_job().job.id)


NOOP = noop.name
RECORD_RUN = record_run.name


async def test_a_delayed_job_waits_until_maintain_promotes_it_when_due(
    queue: Queue, events: EventRecorder
) -> None:
    job_id = await queue.add(NOOP, delay=60)
    worker = queue.worker()

    job = await queue.get_job(job_id)
    assert job.status is JobState.DELAYED
    assert job.delay_until == job.created_at + 60
    assert job.ready_at is None
    assert events.names(job_id) == ["job:delayed"]
    assert await worker.process() is False

    assert await worker.scheduler.tick(job.delay_until - 1) == job.delay_until
    assert await queue.counts() == counts(delayed=1)
    assert await worker.process() is False

    assert await worker.scheduler.tick(job.delay_until) is None
    assert await queue.counts() == counts(waiting=1)
    assert (await queue.get_job(job_id)).ready_at == job.delay_until
    assert await worker.process() is True
    assert (await queue.get_job(job_id)).status is JobState.COMPLETED


@pytest.mark.parametrize("added", ["before_start", "while_running"])
async def test_a_delayed_job_runs_at_its_due_time_not_at_the_next_scan(
    make_queue: Callable[..., Queue], events: EventRecorder, start_worker: StartWorker, added: str
) -> None:
    queue = make_queue(scan_interval=5)
    worker = queue.worker(handle_signals=False)
    if added == "while_running":
        await start_worker(worker)
    job_id = await queue.add(NOOP, delay=0.2)
    if added == "before_start":
        await start_worker(worker)

    await events.wait("job:completed", job_id=job_id, within_s=2.0)  # a scan would take 5 s

    [started] = events.of("job:started", job_id)
    lateness = started["timestamps"]["started_at"] - started["timestamps"]["delay_until"]
    assert 0 <= lateness < 0.25


async def test_a_repeatable_stores_its_next_occurrence_as_a_delayed_job(
    queue: Queue, events: EventRecorder
) -> None:
    before = time.time()
    key = await queue.add_repeatable(RECORD_RUN, every=30, args=[queue.name])
    after = time.time()

    [rep] = await queue.repeatables()
    assert (rep.key, rep.task, rep.every_s, rep.args) == (key, RECORD_RUN, 30.0, [queue.name])
    assert before + 30 <= rep.next_run_at <= after + 30
    [pending] = await queue.list_jobs("delayed")
    assert (pending.id, pending.delay_until, pending.repeat_key) == (
        rep.occurrence_id(rep.next_run_at),
        rep.next_run_at,
        key,
    )
    [delayed] = events.of("job:delayed")
    assert (delayed["id"], delayed["repeat_key"]) == (pending.id, key)


async def test_adding_the_same_repeatable_again_changes_nothing(queue: Queue) -> None:
    key = await queue.add_repeatable(RECORD_RUN, every=30, args=[queue.name])

    assert await queue.add_repeatable(RECORD_RUN, every=30, args=[queue.name]) == key

    assert [rep.key for rep in await queue.repeatables()] == [key]
    assert await queue.counts() == counts(delayed=1)


async def test_a_due_repeatable_occurrence_runs_and_the_next_one_is_stored(queue: Queue) -> None:
    await queue.add_repeatable(RECORD_RUN, every=30, args=[queue.name])
    [rep] = await queue.repeatables()
    first_at = rep.next_run_at
    worker = queue.worker()

    assert await worker.scheduler.tick(first_at) == first_at + 30

    assert await queue.counts() == counts(waiting=1, delayed=1)
    [following] = await queue.list_jobs("delayed")
    assert (following.id, following.delay_until) == (rep.occurrence_id(first_at + 30), first_at + 30)
    assert [r.next_run_at for r in await queue.repeatables()] == [first_at + 30]
    assert await worker.process() is True
    assert RUNS[queue.name] == [rep.occurrence_id(first_at)]


async def test_a_repeatable_occurrence_fires_once_with_two_workers_on_the_same_backend(
    make_queue: Callable[..., Queue],
) -> None:
    await make_queue().add_repeatable(RECORD_RUN, every=30, args=[make_queue().name])
    [rep] = await make_queue().repeatables()
    first, second = make_queue().worker(), make_queue().worker()

    await first.scheduler.tick(rep.next_run_at)
    await second.scheduler.tick(rep.next_run_at)

    assert await make_queue().counts() == counts(waiting=1, delayed=1)
    outcomes = [await first.process(), await second.process(), await first.process(), await second.process()]
    assert outcomes == [True, False, False, False]
    assert RUNS[rep.queue] == [rep.occurrence_id(rep.next_run_at)]


async def test_only_one_scheduler_can_advance_a_repeatable_from_a_given_time(queue: Queue) -> None:
    key = await queue.add_repeatable(RECORD_RUN, every=30, args=[queue.name])
    [rep] = await queue.repeatables()
    due, following = rep.next_run_at, rep.next_run_at + 30

    assert await queue.backend.advance_repeatable(queue.name, key, due, following) is True
    assert await queue.backend.advance_repeatable(queue.name, key, due, following + 1) is False  # lost
    # The same advance again (a resend after a lost reply) succeeds and changes nothing.
    assert await queue.backend.advance_repeatable(queue.name, key, due, following) is True

    assert [r.next_run_at for r in await queue.repeatables()] == [following]


async def test_repeatable_occurrences_run_once_each_with_two_running_workers(
    make_queue: Callable[..., Queue], events: EventRecorder, start_worker: StartWorker
) -> None:
    workers = [make_queue(scan_interval=5).worker(handle_signals=False) for _ in range(2)]
    running = [await start_worker(worker) for worker in workers]
    queue = make_queue()

    key = await queue.add_repeatable(RECORD_RUN, every=0.1, args=[queue.name])
    await events.wait("job:completed", count=3, within_s=2.0)
    for worker in workers:
        worker.stop()
    await asyncio.wait_for(asyncio.gather(*running), WAIT_S)

    runs = RUNS[queue.name]
    assert len(runs) == len(set(runs)) >= 3
    assert all(run.startswith(f"repeat:{key}:") for run in runs)
    assert sorted(payload["id"] for payload in events.of("job:started")) == sorted(runs)


async def test_a_repeatable_fires_each_occurrence_on_time(
    make_queue: Callable[..., Queue], events: EventRecorder, start_worker: StartWorker
) -> None:
    queue = make_queue(scan_interval=5)
    await start_worker(queue.worker(handle_signals=False))

    await queue.add_repeatable(RECORD_RUN, every=0.2, args=[queue.name])
    await events.wait("job:completed", count=3, within_s=2.0)  # a missed wake-up waits for a 5 s scan

    for started in events.of("job:started")[:3]:
        lateness = started["timestamps"]["started_at"] - started["timestamps"]["delay_until"]
        assert 0 <= lateness < 0.25


async def test_a_cron_repeatable_fires_at_each_matching_time(queue: Queue) -> None:
    before = time.time()
    await queue.add_repeatable(RECORD_RUN, cron="*/5 * * * *", args=[queue.name])
    [rep] = await queue.repeatables()
    worker = queue.worker()

    assert rep.next_run_at % 300 == 0
    assert before < rep.next_run_at <= before + 300
    [pending] = await queue.list_jobs("delayed")
    assert pending.delay_until == rep.next_run_at

    await worker.scheduler.tick(rep.next_run_at)
    assert await worker.process() is True

    assert RUNS[queue.name] == [rep.occurrence_id(rep.next_run_at)]
    [following] = await queue.list_jobs("delayed")
    assert following.delay_until == rep.next_run_at + 300


@pytest.mark.parametrize(
    ("cron", "every"),
    [
        ("not a cron", None),
        ("61 * * * *", None),
        (None, 0),
        (None, -1),
        ("* * * * *", 60),
        (None, None),
    ],
)
async def test_an_invalid_schedule_raises_invalid_schedule_error_and_stores_nothing(
    queue: Queue, cron: str | None, every: float | None
) -> None:
    with pytest.raises(InvalidScheduleError):
        await queue.add_repeatable(RECORD_RUN, cron=cron, every=every, args=[queue.name])

    assert await queue.repeatables() == []
    assert await queue.counts() == counts()


async def test_removing_a_repeatable_cancels_its_pending_occurrence(queue: Queue) -> None:
    key = await queue.add_repeatable(RECORD_RUN, every=30, args=[queue.name])

    assert await queue.remove_repeatable(key) is True

    assert await queue.repeatables() == []
    assert await queue.counts() == counts(cancelled=1)
    assert await queue.remove_repeatable(key) is False
