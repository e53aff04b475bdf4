"""AsyncMQ's queues and schedulers pages (docs/ of dymmond/asyncmq), written as they write
them: `queue.add`, `add_bulk`, and repeatables declared with `queue.add_repeatable(...)`
without `await`, which a worker of the queue stores as it starts; each checked for its effect
(stored, run, repeated, removed)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from asyncmq.backends.memory import InMemoryBackend
from asyncmq.backends.redis import RedisBackend
from asyncmq.core.seam import event_emitter
from asyncmq.job import JobState
from asyncmq.queues import Queue
from asyncmq.registry import TASK_REGISTRY
from asyncmq.tasks import task

#: What each example's task did, by queue name.
DONE: dict[str, list[Any]] = {}


@pytest.fixture
def myapp_tasks(name: str) -> Iterator[None]:
    """The pages' `myapp.tasks.*` and `app.cleanup` tasks, recording into `DONE[name]`; the
    tasks registered before under those ids (another module's `app.cleanup`) are put back."""
    registered = dict(TASK_REGISTRY)

    @task(queue=name, name="myapp.tasks.send_email")
    async def send_email(address: str) -> None:
        DONE.setdefault(name, []).append(address)

    @task(queue=name, name="myapp.tasks.a")
    async def a(x: int) -> None:
        DONE.setdefault(name, []).append(("a", x))

    @task(queue=name, name="myapp.tasks.b")
    async def b(x: int) -> None:
        DONE.setdefault(name, []).append(("b", x))

    @task(queue=name, name="myapp.tasks.cleanup")
    async def cleanup() -> None:
        DONE.setdefault(name, []).append("cleanup")

    @task(queue=name, name="app.cleanup")
    async def app_cleanup() -> None:
        DONE.setdefault(name, []).append("app.cleanup")

    yield
    TASK_REGISTRY.clear()
    TASK_REGISTRY.update(registered)
    DONE.pop(name, None)


@pytest.mark.usefixtures("myapp_tasks")
async def test_add_and_add_bulk_store_jobs_that_a_worker_runs(name: str) -> None:
    queue = Queue(name, backend=InMemoryBackend())

    job_id = await queue.add("myapp.tasks.send_email", args=["a@b.com"], retries=2)
    ids = await queue.add_bulk(
        [
            {"task_id": "myapp.tasks.a", "args": [1]},
            {"task_id": "myapp.tasks.b", "kwargs": {"x": 2}},
        ]
    )

    assert (await queue.get_job(job_id)).max_retries == 2
    assert len(ids) == 2
    await queue.run(burst=True)
    assert DONE[name] == ["a@b.com", ("a", 1), ("b", 2)]


@pytest.mark.usefixtures("myapp_tasks")
async def test_arguments_the_task_does_not_take_are_refused_by_add(name: str) -> None:
    queue = Queue(name, backend=InMemoryBackend())

    with pytest.raises(TypeError, match=r"task 'myapp.tasks.b', b\(x\): missing a required argument: 'x'"):
        await queue.add_bulk(
            [{"task_id": "myapp.tasks.a", "args": [1]}, {"task_id": "myapp.tasks.b", "kwargs": {"y": 2}}]
        )
    assert sum((await queue.counts()).values()) == 0


@pytest.mark.usefixtures("myapp_tasks")
async def test_the_queues_page_repeatable_without_await_is_stored_when_the_queue_runs(name: str) -> None:
    queue = Queue(name, backend=InMemoryBackend())
    queue.add_repeatable(
        task_id="app.cleanup",
        every=3600,  # seconds
        args=None,
        cron=None,
    )
    assert await queue.repeatables() == []  # declared: stored by the worker below

    await queue.run(burst=True)
    [schedule] = await queue.repeatables()
    assert (schedule.task, schedule.every_s) == ("app.cleanup", 3600)
    [occurrence] = await queue.list_jobs("delayed")
    assert occurrence.delay_until == schedule.next_run_at
    worker = queue.worker()
    await worker.scheduler.tick(now=schedule.next_run_at)
    assert await worker.process() is True
    assert DONE[name] == ["app.cleanup"]

    # and removed with the definition it was given, as AsyncMQ's remove_repeatable(job_def)
    job_def = {"task_id": "app.cleanup", "every": 3600, "args": None, "cron": None}
    assert await queue.remove_repeatable(job_def) is True
    assert await queue.repeatables() == []


@pytest.mark.usefixtures("myapp_tasks")
async def test_the_schedulers_page_local_schedule_fires_on_a_running_worker(
    name: str, redis_backend: RedisBackend
) -> None:
    queue = Queue(name, backend=redis_backend, scan_interval=0.05)
    ran = asyncio.Event()
    event_emitter.on("job:completed", lambda payload: ran.set() if payload["queue"] == name else None)

    # Local schedule only visible to this worker process.
    queue.add_repeatable("myapp.tasks.cleanup", every=0.2)

    worker = asyncio.create_task(queue.run())
    try:
        await asyncio.wait_for(ran.wait(), 10)
    finally:
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)
    assert DONE[name][0] == "cleanup"
    [schedule] = await queue.repeatables()
    assert schedule.task == "myapp.tasks.cleanup"


@pytest.mark.usefixtures("myapp_tasks")
async def test_the_user_guides_cron_repeatable_written_without_await_fires_at_each_minute(
    name: str,
) -> None:
    queue = Queue(name, backend=InMemoryBackend())
    queue.add_repeatable(task_id="app.cleanup", cron="*/1 * * * *")

    await queue.run(burst=True)  # stores it as it starts
    [occurrence] = await queue.list_jobs("delayed")
    assert occurrence.task == "app.cleanup"
    assert occurrence.delay_until is not None
    boundary = datetime.fromtimestamp(occurrence.delay_until, UTC)
    assert (boundary.second, boundary.microsecond) == (0, 0)
    worker = queue.worker()
    await worker.scheduler.tick(now=occurrence.delay_until)
    assert await worker.process() is True
    assert (await queue.get_job(occurrence.id)).status is JobState.COMPLETED
    assert DONE[name] == ["app.cleanup"]
