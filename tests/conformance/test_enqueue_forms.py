"""Enqueueing a task in AsyncMQ's two forms, on every backend: `enqueue(*args, backend=...,
delay=..., priority=...)` and `enqueue(backend, *args)`, their aliases, `repeat_every=`, the
keywords a task also takes, and arguments checked against the task's signature before
anything is stored."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import asyncmq
from asyncmq import JobState, Queue
from asyncmq.errors import InvalidJobError, TaskArgumentsError
from asyncmq.registry import TASK_REGISTRY
from asyncmq.results import JobId
from asyncmq.tasks import Task
from tests.conformance.support import EventRecorder, counts

#: What each `record` job ran with, by the test's queue name, in the order they ran.
RAN: dict[str, list[Any]] = {}

DefineTask = Callable[..., Task[Any, Any]]


@pytest.fixture
def define(queue: Queue) -> Iterator[DefineTask]:
    """`define(fn, **defaults)`: `fn` as a task of the test's queue (its id made unique with
    the queue's name), unregistered after the test."""
    names: list[str] = []

    def make(fn: Callable[..., Any], **defaults: Any) -> Task[Any, Any]:
        made = asyncmq.task(queue=queue.name, name=f"{fn.__name__}.{queue.name}", **defaults)(fn)
        names.append(made.name)
        return made

    yield make
    for name in names:
        TASK_REGISTRY.pop(name, None)


@pytest.fixture
def send_email(define: DefineTask, queue: Queue) -> Task[Any, Any]:
    async def send_email(to: str, subject: str, *, cc: str | None = None) -> str:
        RAN.setdefault(queue.name, []).append([to, subject])
        return f"sent to {to}"

    return define(send_email)


@pytest.fixture
def fetch(define: DefineTask) -> Task[Any, Any]:
    """A task whose own parameters are called like two options of enqueue."""

    async def fetch(url: str, priority: int = 0, delay: float = 0.0) -> list[Any]:
        return [url, priority, delay]

    return define(fetch)


async def test_the_keyword_form_stores_a_delayed_job_with_its_priority(
    queue: Queue, events: EventRecorder, send_email: Task[Any, Any]
) -> None:
    job_id = await send_email.enqueue("ada@example.com", "Hi", backend=queue.backend, delay=60, priority=3)

    assert isinstance(job_id, JobId)
    job = await queue.get_job(job_id)
    assert (job.status, job.priority, job.args, job.kwargs) == (
        JobState.DELAYED,
        3,
        ["ada@example.com", "Hi"],
        {},
    )
    assert job.delay_until == job.created_at + 60
    assert events.names(job_id) == ["job:delayed"]
    assert await queue.worker().process() is False  # not before its time


async def test_the_backend_first_form_stores_the_same_job(queue: Queue, send_email: Task[Any, Any]) -> None:
    delayed = await send_email.enqueue(queue.backend, "ada@example.com", "Hi", delay=60, priority=3)
    now = await send_email.enqueue(queue.backend, "bob@example.com", "Hey", cc="eve@example.com")

    job = await queue.get_job(delayed)
    assert (job.status, job.priority, job.args, job.delay_until) == (
        JobState.DELAYED,
        3,
        ["ada@example.com", "Hi"],
        job.created_at + 60,
    )
    assert await queue.counts() == counts(waiting=1, delayed=1)
    assert await queue.worker().process() is True
    ran = await queue.get_job(now)
    assert (ran.status, ran.args, ran.kwargs, ran.result) == (
        JobState.COMPLETED,
        ["bob@example.com", "Hey"],
        {"cc": "eve@example.com"},
        "sent to bob@example.com",
    )


async def test_the_priority_given_to_enqueue_orders_the_jobs(
    queue: Queue, send_email: Task[Any, Any]
) -> None:
    for priority in (5, 1, 3):
        await send_email.enqueue(f"p{priority}", "x", backend=queue.backend, priority=priority)
    await send_email.enqueue(queue.backend, "p0", "x", priority=0)

    worker = queue.worker()
    for _ in range(4):
        assert await worker.process() is True

    assert RAN.pop(queue.name) == [["p0", "x"], ["p1", "x"], ["p3", "x"], ["p5", "x"]]


async def test_delay_and_send_are_enqueue(queue: Queue, send_email: Task[Any, Any]) -> None:
    later = await send_email.delay("ada@example.com", "Hi", backend=queue.backend, delay=30)
    now = await send_email.send(queue.backend, "bob@example.com", "Hey")

    assert (await queue.get_job(later)).status is JobState.DELAYED
    assert isinstance(now, JobId)
    assert await queue.worker().process() is True
    assert await now.result(timeout=5) == "sent to bob@example.com"


async def test_a_keyword_that_is_also_a_parameter_of_the_task_is_refused_and_nothing_is_stored(
    queue: Queue, events: EventRecorder, fetch: Task[Any, Any]
) -> None:
    with pytest.raises(
        TaskArgumentsError, match=r"ambiguous: task '.*' has a parameter 'priority'"
    ) as raised:
        await fetch.enqueue("https://a", priority=1, backend=queue.backend)
    assert r"fetch.options(priority=...).enqueue(...)" in str(raised.value)
    assert r"fetch.options().enqueue(..., priority=...)" in str(raised.value)
    with pytest.raises(TaskArgumentsError, match="'delay'"):
        await fetch.enqueue(queue.backend, "https://a", delay=5)

    assert await queue.counts() == counts()
    assert events.records == []


async def test_the_ways_out_of_a_shadowed_keyword_pass_it_where_meant(
    queue: Queue, fetch: Task[Any, Any]
) -> None:
    to_task = await fetch.options().enqueue(queue.backend, "https://a", priority=1, delay=2.5)
    as_option = await fetch.options(priority=1, delay=60).enqueue(queue.backend, "https://b")
    positional = await fetch.enqueue("https://c", 7, backend=queue.backend)

    job = await queue.get_job(to_task)
    assert (job.status, job.kwargs, job.priority) == (JobState.WAITING, {"priority": 1, "delay": 2.5}, 5)
    job = await queue.get_job(as_option)
    assert (job.status, job.kwargs, job.priority) == (JobState.DELAYED, {}, 1)
    assert (await queue.get_job(positional)).args == ["https://c", 7]


BAD_CALLS = [
    pytest.param(["ada@example.com"], {}, "missing a required argument: 'subject'", id="missing"),
    pytest.param(["a", "b", "c"], {}, "too many positional arguments", id="too-many"),
    pytest.param(["a", "b"], {"bcc": "x"}, "got an unexpected keyword argument 'bcc'", id="unknown-keyword"),
    pytest.param(["a"], {"to": "x", "subject": "y"}, "multiple values for argument 'to'", id="twice"),
]


@pytest.mark.parametrize(("args", "kwargs", "problem"), BAD_CALLS)
async def test_arguments_that_do_not_fit_the_task_are_refused_everywhere_and_nothing_is_stored(
    queue: Queue,
    events: EventRecorder,
    send_email: Task[Any, Any],
    args: list[Any],
    kwargs: dict[str, Any],
    problem: str,
) -> None:
    says = re.escape(
        f"the arguments do not fit task '{send_email.name}', send_email(to, subject, *, cc=None): "
    )
    says += re.escape(problem)
    with pytest.raises(TaskArgumentsError, match=says):
        await send_email.enqueue(*args, backend=queue.backend, **kwargs)
    with pytest.raises(TaskArgumentsError, match=says):
        await send_email.options(priority=1).enqueue(queue.backend, *args, **kwargs)
    with pytest.raises(TaskArgumentsError, match=says):
        await queue.add(send_email.name, args, kwargs)
    good = {"task_id": send_email.name, "args": ["a", "b"]}
    with pytest.raises(TaskArgumentsError, match=says):
        await queue.add_bulk([good, {"task_id": send_email.name, "args": args, "kwargs": kwargs}])
    with pytest.raises(TaskArgumentsError, match=says):
        queue.add_repeatable(send_email.name, every=60, args=args, kwargs=kwargs)

    assert await queue.counts() == counts()
    assert await queue.repeatables() == []
    assert await queue.store_declared() == []
    assert events.records == []


async def test_a_task_not_defined_in_the_producer_is_not_checked(queue: Queue) -> None:
    job_id = await queue.add("defined.only.on.the.workers", args=[1, 2, 3], kwargs={"any": True})

    assert (await queue.get_job(job_id)).args == [1, 2, 3]


async def test_a_task_taking_anything_takes_any_call(queue: Queue, define: DefineTask) -> None:
    async def anything(*args: Any, **kwargs: Any) -> int:
        return len(args) + len(kwargs)

    flexible = define(anything)
    for count in range(3):
        await flexible.enqueue(*range(count), backend=queue.backend, **{f"k{count}": count})

    assert await queue.counts() == counts(waiting=3)


async def test_repeat_every_enqueues_now_and_stores_a_schedule_that_fires(
    queue: Queue, send_email: Task[Any, Any]
) -> None:
    job_id = await send_email.enqueue("ada@example.com", "Digest", backend=queue.backend, repeat_every=60)
    again = await send_email.enqueue("ada@example.com", "Digest", backend=queue.backend, repeat_every=60)

    [rep] = await queue.repeatables()
    assert (rep.task, rep.every_s, rep.args) == (send_email.name, 60.0, ["ada@example.com", "Digest"])
    first = await queue.get_job(job_id)
    assert first.status is JobState.WAITING
    assert 60 <= rep.next_run_at - first.created_at < 61
    assert await queue.counts() == counts(waiting=2, delayed=1)  # two now, one schedule's next run

    worker = queue.worker()
    assert await worker.process() is True
    assert await worker.process() is True
    await worker.scheduler.tick(now=rep.next_run_at)
    assert await worker.process() is True  # the schedule fired
    assert RAN.pop(queue.name) == [["ada@example.com", "Digest"]] * 3
    assert (await queue.get_job(again)).status is JobState.COMPLETED


async def test_repeat_every_with_a_delay_starts_repeating_after_the_delayed_run(
    queue: Queue, send_email: Task[Any, Any]
) -> None:
    job_id = await send_email.enqueue("a", "b", backend=queue.backend, delay=600, repeat_every=60, priority=2)

    job = await queue.get_job(job_id)
    [rep] = await queue.repeatables()
    assert job.delay_until is not None
    assert 60 <= rep.next_run_at - job.delay_until < 61
    assert rep.options.get("priority") == 2


async def test_a_bad_repeat_every_is_refused_and_nothing_is_stored(
    queue: Queue, events: EventRecorder, send_email: Task[Any, Any]
) -> None:
    with pytest.raises(InvalidJobError, match=r"every= of repeatable .* must be > 0 seconds"):
        await send_email.enqueue("a", "b", backend=queue.backend, repeat_every=-1)

    assert await queue.counts() == counts()
    assert await queue.repeatables() == []
    assert events.records == []


async def test_depends_on_blocks_the_job_on_its_parent(
    queue: Queue, events: EventRecorder, send_email: Task[Any, Any]
) -> None:
    parent = await send_email.enqueue("a", "b", backend=queue.backend, depends_on=[])  # none: as without
    child = await send_email.enqueue("a", "b", backend=queue.backend, depends_on=[parent])
    assert await queue.counts() == counts(waiting=1, blocked=1)
    assert [event.value for event, _ in events.records] == ["job:enqueued", "job:blocked"]
    assert [job.id for job in await queue.list_jobs(JobState.BLOCKED)] == [child]


async def test_two_backends_for_one_enqueue_are_refused(queue: Queue, send_email: Task[Any, Any]) -> None:
    with pytest.raises(InvalidJobError, match="two backends"):
        await send_email.enqueue(queue.backend, "a", "b", backend=queue.backend)
    with pytest.raises(InvalidJobError, match="two backends"):
        await send_email.options(backend=queue.backend).enqueue(queue.backend, "a", "b")

    assert await queue.counts() == counts()
