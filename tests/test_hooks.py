"""Hooks around enqueue and attempts: the seam tracing uses. They can change a job before it is
stored and wrap its run, and a failing hook never fails the job."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from asyncmq.backends.memory import InMemoryBackend
from asyncmq.context import current_job
from asyncmq.core.hooks import JobHook
from asyncmq.core.seam import hooks
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
    hooks.clear()


class Stamp(JobHook):
    def before_enqueue(self, jobs: Sequence[Job]) -> int:
        for job in jobs:
            job.meta["stamp"] = f"stamped-{job.task.rsplit('.', 1)[-1]}"
        return len(jobs)

    def after_enqueue(self, jobs: Sequence[Job], state: Any, error: BaseException | None) -> None:
        SEEN.append(f"stored {state} error={error!r}")


class Around(JobHook):
    def before_attempt(self, job: Job) -> str:
        SEEN.append(f"before {job.attempt}")
        return f"state of {job.task.rsplit('.', 1)[-1]}"

    def after_attempt(self, job: Job, state: Any, error: BaseException | None) -> None:
        SEEN.append(f"after {state}: {error!r}")


async def test_an_enqueue_hook_writes_metadata_that_is_stored_and_seen_by_the_task() -> None:
    hooks.add(Stamp())
    queue = Queue("hooks", backend=InMemoryBackend())
    job_id = await queue.add(note_meta.name)
    await asyncio.wait_for(queue.run(burst=True), 10)
    assert (await queue.get_job(job_id)).result == "stamped-note_meta"
    assert SEEN == ["stored 1 error=None", "task"]


async def test_an_enqueue_hook_is_told_when_storing_fails() -> None:
    class Broken(InMemoryBackend):
        async def enqueue(self, jobs: Sequence[Job], *, connection: object = None) -> list[bool]:
            raise ConnectionError("store down")

    hooks.add(Stamp())
    with pytest.raises(ConnectionError):
        await Queue("hooks", backend=Broken()).add(note_meta.name)
    assert SEEN == ["stored 1 error=ConnectionError('store down')"]


async def test_an_attempt_hook_wraps_the_task_and_sees_its_exception() -> None:
    hooks.add(Around())
    queue = Queue("hooks", backend=InMemoryBackend())
    await queue.add(note_meta.name)
    await queue.add(explode.name)
    worker = queue.worker()
    assert await worker.process()
    assert await worker.process()
    assert SEEN == [
        "before 1",
        "task",
        "after state of note_meta: None",
        "before 1",
        "after state of explode: ValueError('boom')",
    ]
    assert (await queue.counts())["failed"] == 1


async def test_a_hook_that_raises_is_skipped_and_the_job_completes(caplog: pytest.LogCaptureFixture) -> None:
    class Broken(JobHook):
        def before_enqueue(self, jobs: Sequence[Job]) -> None:
            raise RuntimeError("enqueue hook bug")

        def after_attempt(self, job: Job, state: Any, error: BaseException | None) -> None:
            raise RuntimeError("attempt hook bug")

    hooks.add(Broken())
    queue = Queue("hooks", backend=InMemoryBackend())
    job_id = await queue.add(note_meta.name)
    await asyncio.wait_for(queue.run(burst=True), 10)
    assert (await queue.get_job(job_id)).status == "completed"
    assert "enqueue hook bug" in caplog.text
    assert "attempt hook bug" in caplog.text


async def test_hooks_run_in_order_and_unwind_in_reverse_skipping_one_that_failed_to_begin() -> None:
    class Named(JobHook):
        def __init__(self, name: str, fail: bool = False) -> None:
            self.name, self.fail = name, fail

        def before_attempt(self, job: Job) -> str:
            SEEN.append(f"before {self.name}")
            if self.fail:
                raise RuntimeError("no")
            return self.name

        def after_attempt(self, job: Job, state: Any, error: BaseException | None) -> None:
            SEEN.append(f"after {state}")

    for hook in (Named("a"), Named("b", fail=True), Named("c")):
        hooks.add(hook)
    queue = Queue("hooks", backend=InMemoryBackend())
    await queue.add(note_meta.name)
    assert await queue.worker().process()
    assert SEEN == ["before a", "before b", "before c", "task", "after c", "after a"]


def test_a_lone_hook_that_guards_itself_is_called_without_the_engines_guard() -> None:
    class Careful(JobHook):
        guards_itself = True

    careful, plain = Careful(), Around()
    hooks.add(careful)
    assert hooks.active is careful
    hooks.clear()
    hooks.add(plain)
    assert hooks.active is not None
    assert hooks.active is not plain  # wrapped in the guard
    hooks.remove(plain)
    assert hooks.active is None


async def test_a_hook_that_breaks_its_promise_to_guard_itself_fails_the_job_not_the_worker() -> None:
    class Liar(JobHook):
        guards_itself = True

        def before_attempt(self, job: Job) -> None:
            raise RuntimeError("unguarded")

    hooks.add(Liar())
    queue = Queue("hooks", backend=InMemoryBackend())
    job_id = await queue.add(note_meta.name)
    worker = queue.worker()
    assert await worker.process()
    job = await queue.get_job(job_id)
    assert job.status == "failed"
    assert job.error is not None
    assert job.error["message"] == "unguarded"
    assert not worker._running
