"""Schedules declared without `await`, as AsyncMQ's guide writes `queue.add_repeatable(...)`,
stored by a worker of the queue as it starts (or, already running, at its next scheduler
pass), and `remove_repeatable` given what `add_repeatable` was, on every backend."""

from __future__ import annotations

import asyncio
import gc
import time
import warnings
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

import asyncmq
from asyncmq import JobState, Queue
from asyncmq.backends.memory import InMemoryBackend
from asyncmq.errors import InvalidJobError, InvalidScheduleError
from asyncmq.queues import ScheduleDeclaration
from asyncmq.registry import TASK_REGISTRY
from tests.conformance.support import EventRecorder, StartWorker, counts

#: The arguments each `tick` job ran with, by the test's queue name.
TICKS: dict[str, list[str]] = {}


@asyncmq.task
async def tick(queue: str) -> None:
    TICKS.setdefault(queue, []).append(queue)


TICK = tick.name


async def test_a_schedule_declared_without_await_is_stored_when_a_worker_starts_and_fires(
    make_queue: Callable[..., Queue], events: EventRecorder, start_worker: StartWorker
) -> None:
    queue = make_queue(scan_interval=0.05)
    declaration = queue.add_repeatable(TICK, every=0.2, args=[queue.name])

    assert isinstance(declaration, ScheduleDeclaration)
    assert await queue.repeatables() == []  # declared, not stored
    assert await queue.counts() == counts()

    await start_worker(queue.worker())
    [rep] = await queue.repeatables()  # stored before the worker said it started
    assert (rep.key, rep.task, rep.every_s) == (declaration.key, TICK, 0.2)
    await events.wait("job:completed", count=2)  # it fired, and fired again
    assert TICKS.pop(queue.name)[:2] == [queue.name, queue.name]


async def test_a_cron_schedule_declared_without_await_fires_at_each_minute_boundary(
    queue: Queue, start_worker: StartWorker
) -> None:
    declaration = queue.add_repeatable(task_id=TICK, cron="*/1 * * * *", args=[queue.name])
    worker = queue.worker()
    running = await start_worker(worker)
    worker.stop()
    await running  # stored as it started; the minute is brought forward below, with no worker on it

    [occurrence] = await queue.list_jobs("delayed")
    assert occurrence.repeat_key == declaration.key
    assert occurrence.delay_until is not None
    boundary = datetime.fromtimestamp(occurrence.delay_until, UTC)
    assert (boundary.second, boundary.microsecond) == (0, 0)
    assert 0 < occurrence.delay_until - time.time() <= 60
    later = queue.worker()
    await later.scheduler.tick(now=occurrence.delay_until)
    assert await later.process() is True
    assert (await queue.get_job(occurrence.id)).status is JobState.COMPLETED
    assert TICKS.pop(queue.name) == [queue.name]


async def test_a_schedule_declared_while_the_worker_runs_is_stored_at_its_next_pass(
    make_queue: Callable[..., Queue], events: EventRecorder, start_worker: StartWorker
) -> None:
    queue = make_queue(scan_interval=0.05)
    await start_worker(queue.worker())
    declaration = queue.add_repeatable(TICK, every=600, args=[queue.name])

    [delayed] = await events.wait("job:delayed")
    assert delayed["repeat_key"] == declaration.key
    assert [rep.key for rep in await queue.repeatables()] == [declaration.key]


async def test_an_awaited_declaration_is_stored_at_once_and_not_again_by_a_worker(
    queue: Queue, start_worker: StartWorker
) -> None:
    declaration = queue.add_repeatable(TICK, every=60, args=[queue.name])
    key = await declaration

    assert key == declaration.key
    assert [rep.key for rep in await queue.repeatables()] == [key]
    assert await queue.remove_repeatable(key) is True
    await start_worker(queue.worker())
    assert await queue.repeatables() == []  # removed stays removed
    assert await queue.counts() == counts(cancelled=1)  # its one pending occurrence


async def test_a_declaration_runs_as_a_task_too(queue: Queue) -> None:
    key = await asyncio.create_task(queue.add_repeatable(TICK, every=60, args=[queue.name]))

    assert [rep.key for rep in await queue.repeatables()] == [key]


async def test_a_declaration_removed_before_any_worker_ran_is_never_stored(
    queue: Queue, start_worker: StartWorker
) -> None:
    declaration = queue.add_repeatable(TICK, every=60, args=[queue.name])

    assert await queue.remove_repeatable(declaration) is True
    assert await queue.remove_repeatable(declaration) is False
    await start_worker(queue.worker())
    assert await queue.repeatables() == []
    assert await queue.counts() == counts()


async def test_a_declaration_on_another_backend_is_left_to_that_backends_workers(
    queue: Queue, start_worker: StartWorker
) -> None:
    elsewhere = Queue(queue.name, backend=InMemoryBackend())
    declaration = elsewhere.add_repeatable(TICK, every=60, args=[queue.name])
    try:
        await start_worker(queue.worker())
        assert await queue.repeatables() == []
        assert await elsewhere.store_declared() == [declaration.key]
        assert [rep.key for rep in await elsewhere.repeatables()] == [declaration.key]
    finally:
        await elsewhere.remove_repeatable(declaration)


async def test_a_declaration_left_alone_raises_no_never_awaited_warning(queue: Queue) -> None:
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        declaration = queue.add_repeatable(TICK, every=60, args=[queue.name])
        await queue.remove_repeatable(declaration.key)
        del declaration
        gc.collect()

    assert [str(warning.message) for warning in seen] == []


REMOVAL_FORMS = [
    pytest.param(lambda key, q: ((key,), {}), id="key"),
    pytest.param(lambda key, q: ((TICK,), {"every": 60, "args": [q], "retries": 2}), id="same-arguments"),
    pytest.param(lambda key, q: ((), {"task_id": TICK, "every": 60, "args": [q]}), id="keywords"),
    pytest.param(
        lambda key, q: (
            ({"task_id": TICK, "every": 60, "cron": None, "args": [q], "kwargs": None, "retries": 2},),
            {},
        ),
        id="asyncmq-mapping",
    ),
]


@pytest.mark.parametrize("form", REMOVAL_FORMS)
async def test_remove_repeatable_takes_what_add_repeatable_was_given(
    queue: Queue, form: Callable[[str, str], tuple[tuple[Any, ...], dict[str, Any]]]
) -> None:
    key = await queue.add_repeatable(TICK, every=60, args=[queue.name], retries=2)
    other = await queue.add_repeatable(TICK, every=60, args=["other"], retries=2)
    [pending] = [job for job in await queue.list_jobs("delayed") if job.repeat_key == key]

    args, kwargs = form(key, queue.name)
    assert await queue.remove_repeatable(*args, **kwargs) is True

    assert [rep.key for rep in await queue.repeatables()] == [other]
    assert (await queue.get_job(pending.id)).status is JobState.CANCELLED
    assert await queue.remove_repeatable(*args, **kwargs) is False


async def test_a_cron_schedule_is_removed_by_its_cron_expression(queue: Queue) -> None:
    queue.add_repeatable("app.cleanup", cron="*/5 * * * *")

    assert await queue.remove_repeatable("app.cleanup", cron="*/5 * * * *") is True
    assert await queue.store_declared() == []


@pytest.mark.parametrize(
    ("call", "message"),
    [
        pytest.param(lambda q: q.remove_repeatable(), "needs a schedule's key", id="nothing"),
        pytest.param(
            lambda q: q.remove_repeatable(TICK, every=60, colour="red"),
            "got colour= that names no",
            id="unknown",
        ),
        pytest.param(
            lambda q: q.remove_repeatable({"task_id": TICK, "every": 60}, every=60),
            "mapping alone",
            id="both",
        ),
        pytest.param(
            lambda q: q.remove_repeatable(TICK, task_id=TICK, every=60), "or twice", id="task-twice"
        ),
    ],
)
async def test_remove_repeatable_refuses_what_names_no_schedule(
    queue: Queue, call: Callable[[Queue], Any], message: str
) -> None:
    await queue.add_repeatable(TICK, every=60, args=[queue.name])

    with pytest.raises(InvalidJobError, match=message):
        await call(queue)
    assert len(await queue.repeatables()) == 1


async def test_asyncmqs_positional_every_and_cron_are_refused_with_the_keyword_to_write(
    queue: Queue, events: EventRecorder
) -> None:
    with pytest.raises(InvalidScheduleError, match="got 3600; for an interval in seconds write every=3600"):
        queue.add_repeatable(TICK, 3600, args=[queue.name])
    with pytest.raises(InvalidScheduleError, match=r"for a cron expression write cron='0 \* \* \* \*'"):
        queue.add_repeatable(TICK, None, "0 * * * *", args=[queue.name])  # type: ignore[arg-type]

    assert await queue.store_declared() == []
    assert await queue.repeatables() == []
    assert events.records == []


async def test_asyncmqs_args_none_is_no_arguments(queue: Queue) -> None:
    key = await queue.add_repeatable(task_id="app.cleanup", every=3600, args=None, cron=None)

    [rep] = await queue.repeatables()
    assert (rep.key, rep.args, rep.kwargs) == (key, [], {})


async def test_a_schedule_whose_task_changed_since_fails_each_occurrence_where_it_shows(
    queue: Queue, events: EventRecorder
) -> None:
    task_id = f"changed.{queue.name}"
    key = await queue.add_repeatable(task_id, every=60, args=["old argument"])  # not defined here then

    async def changed() -> None:  # the task as redeployed: it takes no argument any more
        return None

    asyncmq.task(queue=queue.name, name=task_id)(changed)
    try:
        [rep] = await queue.repeatables()
        worker = queue.worker()
        await worker.scheduler.tick(now=rep.next_run_at)
        assert await worker.process() is True
    finally:
        TASK_REGISTRY.pop(task_id, None)

    [failed] = events.of("job:failed")
    assert failed["repeat_key"] == key
    assert failed["error"]["type"] == "TypeError"
    assert (await queue.counts())["delayed"] == 1  # the next occurrence, stored all the same
