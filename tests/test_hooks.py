"""Hooks around enqueue and attempts: the seam tracing uses. They can change a job before it is
stored and wrap its run, and a failing hook never fails the job."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator, Sequence

import pytest

from asyncmq.backends.memory import InMemoryBackend
from asyncmq.context import current_job
from asyncmq.core.hooks import guards_itself, hooks
from asyncmq.job import Job
from asyncmq.queues import Queue
from asyncmq.tasks import task

SEEN: list[str] = []


@task(queue="hooks")
async def note_meta() -> object:
    SEEN.append("task")
    return current_job().job.meta.get("stamp")


@task(queue="hooks")
async def explode() -> None:
    raise ValueError("boom")


@pytest.fixture(autouse=True)
def _no_hooks() -> Iterator[None]:
    SEEN.clear()
    yield
    hooks.around_enqueue.clear()
    hooks.around_attempt.clear()


async def test_an_enqueue_hook_writes_metadata_that_is_stored_and_seen_by_the_task() -> None:
    @contextlib.contextmanager
    def stamp(jobs: Sequence[Job]) -> Iterator[None]:
        for job in jobs:
            job.meta["stamp"] = f"stamped-{job.task.rsplit('.', 1)[-1]}"
        yield
        SEEN.append(f"stored {len(jobs)}")

    hooks.around_enqueue.append(stamp)
    queue = Queue("hooks", backend=InMemoryBackend())
    job_id = await queue.add(note_meta.name)
    await asyncio.wait_for(queue.run(burst=True), 10)
    assert (await queue.get_job(job_id)).result == "stamped-note_meta"
    assert SEEN == ["stored 1", "task"]


async def test_an_attempt_hook_wraps_the_task_and_sees_its_exception() -> None:
    outcomes: list[str] = []

    @contextlib.contextmanager
    def around(job: Job) -> Iterator[None]:
        outcomes.append(f"enter {job.attempt}")
        try:
            yield
        except ValueError as exc:
            outcomes.append(f"raised {exc}")
            raise
        else:
            outcomes.append("ok")

    hooks.around_attempt.append(around)
    queue = Queue("hooks", backend=InMemoryBackend())
    await queue.add(note_meta.name)
    await queue.add(explode.name)
    worker = queue.worker()
    assert await worker.process()
    assert await worker.process()
    assert outcomes == ["enter 1", "ok", "enter 1", "raised boom"]
    assert (await queue.counts())["failed"] == 1


async def test_a_hook_that_raises_is_skipped_and_the_job_completes(caplog: pytest.LogCaptureFixture) -> None:
    def broken_enqueue(jobs: Sequence[Job]) -> contextlib.AbstractContextManager[None]:
        raise RuntimeError("enqueue hook bug")

    @contextlib.contextmanager
    def broken_exit(job: Job) -> Iterator[None]:
        yield
        raise RuntimeError("attempt hook bug")

    hooks.around_enqueue.append(broken_enqueue)
    hooks.around_attempt.append(broken_exit)
    queue = Queue("hooks", backend=InMemoryBackend())
    job_id = await queue.add(note_meta.name)
    await asyncio.wait_for(queue.run(burst=True), 10)
    assert (await queue.get_job(job_id)).status == "completed"
    assert "enqueue hook bug" in caplog.text
    assert "attempt hook bug" in caplog.text


async def test_a_hook_that_guards_itself_runs_without_the_engines_guard() -> None:
    entered: list[Job] = []

    class Around:
        def __init__(self, job: Job) -> None:
            self.job = job

        def __enter__(self) -> None:
            entered.append(self.job)

        def __exit__(self, *exc_info: object) -> None:
            SEEN.append("exit")

    hook = guards_itself(Around)
    hooks.around_attempt.append(hook)
    job = Job(id="j", queue="hooks", task=note_meta.name)
    assert type(hooks.attempting(job)) is Around  # its own manager, not wrapped
    queue = Queue("hooks", backend=InMemoryBackend())
    await queue.add(note_meta.name)
    await asyncio.wait_for(queue.run(burst=True), 10)
    assert len(entered) == 1
    assert SEEN == ["task", "exit"]
