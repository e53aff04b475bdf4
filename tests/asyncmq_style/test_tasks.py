"""AsyncMQ's quickstart, tasks and core-concepts pages (docs/ of dymmond/asyncmq), written as
they write them, each checked for the effect the page describes: the job enqueued with its
delay and priority, run by a worker, repeated."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from asyncmq.backends.memory import InMemoryBackend
from asyncmq.backends.redis import RedisBackend
from asyncmq.job import JobState
from asyncmq.queues import Queue
from asyncmq.registry import TASK_REGISTRY
from asyncmq.tasks import Task, task

#: Who each example's task greeted or emailed, by queue, in the order the jobs ran.
DONE: dict[str, list[str]] = {}


@pytest.fixture
def define(name: str) -> Iterator[Callable[..., Callable[[Callable[..., Any]], Task[Any, Any]]]]:
    """`@define(queue=..., retries=..., ttl=...)`: the examples' `@task(queue="default", ...)`
    on this test's own queue (`name`, or `name-<suffix>`), unregistered afterwards."""
    made: list[str] = []

    def decorator(*, suffix: str = "", **options: Any) -> Callable[[Callable[..., Any]], Task[Any, Any]]:
        queue = f"{name}-{suffix}" if suffix else name

        def register(fn: Callable[..., Any]) -> Task[Any, Any]:
            registered = task(queue=queue, name=f"{queue}.{fn.__name__}", **options)(fn)
            made.append(registered.name)
            return registered

        return register

    yield decorator
    for task_id in made:
        TASK_REGISTRY.pop(task_id, None)


async def test_quickstart_say_hello_is_enqueued_then_run_by_a_worker(
    redis_backend: RedisBackend, name: str, define: Any
) -> None:
    backend = redis_backend

    @define()
    async def say_hello(name: str) -> None:
        DONE.setdefault(say_hello.queue, []).append(f"Hello, {name}!")

    # Enqueue a job; the worker runs it (`asyncmq worker start default` there)
    await say_hello.enqueue("World", backend=backend)

    queue = Queue(name, backend=backend)
    assert [job.args for job in await queue.list_jobs("waiting")] == [["World"]]
    await queue.run(burst=True)
    assert DONE.pop(name) == ["Hello, World!"]
    assert (await queue.counts())["completed"] == 1


async def test_the_tasks_page_enqueue_with_delay_and_priority(name: str, define: Any) -> None:
    backend = InMemoryBackend()

    @define(retries=1, ttl=60)
    async def send_email(recipient: str, subject: str, body: str) -> None:
        DONE.setdefault(name, []).append(recipient)

    job_id = await send_email.enqueue(
        "alice@example.com",
        "Welcome!",
        "Thanks for joining.",
        backend=backend,  # Optional: AsyncMQSettings.backend if omitted
        delay=5.0,  # run 5 seconds from now
        priority=3,  # higher urgency
        repeat_every=None,  # no repeats
    )

    job = await Queue(name, backend=backend).get_job(job_id)
    assert job.status is JobState.DELAYED
    assert job.delay_until == job.created_at + 5.0
    assert (job.priority, job.max_retries, job.ttl_s) == (3, 1, 60)
    assert (job.args, job.kwargs) == (["alice@example.com", "Welcome!", "Thanks for joining."], {})


@pytest.mark.parametrize("alias", ["delay", "send"])
async def test_the_tasks_page_delay_and_send_aliases_do_what_enqueue_does(
    name: str, define: Any, alias: str
) -> None:
    backend = InMemoryBackend()

    @define(retries=1, ttl=60)
    async def send_email(recipient: str, subject: str, body: str) -> None:
        DONE.setdefault(name, []).append(recipient)

    job_id = await getattr(send_email, alias)(
        "alice@example.com",
        "Welcome!",
        "Thanks for joining.",
        backend=backend,
        delay=5.0,
        priority=3,
    )

    queue = Queue(name, backend=backend)
    job = await queue.get_job(job_id)
    assert (job.status, job.priority, job.delay_until) == (JobState.DELAYED, 3, job.created_at + 5.0)
    worker = queue.worker()
    await worker.scheduler.tick(now=job.created_at + 5.0)
    assert await worker.process() is True
    assert DONE.pop(name) == ["alice@example.com"]


async def test_core_concepts_backend_first_with_delay_and_priority(name: str, define: Any) -> None:
    backend = InMemoryBackend()

    @define(retries=2, ttl=60)
    async def greet(name: str) -> None:
        DONE.setdefault(greet.queue, []).append(f"Hello {name}")

    # You explicitly want to pass a backend
    job_id = await greet.enqueue(backend, "Alice", delay=5, priority=3)

    queue = Queue(name, backend=backend)
    job = await queue.get_job(job_id)
    assert (job.status, job.args, job.priority, job.max_retries) == (JobState.DELAYED, ["Alice"], 3, 2)
    assert await queue.worker().process() is False  # not before its 5 s


async def test_a_lower_priority_number_runs_first_as_the_pages_say(name: str, define: Any) -> None:
    backend = InMemoryBackend()

    @define()
    async def send_welcome(email: str) -> None:
        DONE.setdefault(name, []).append(email)

    await send_welcome.enqueue("low@example.com", backend=backend, delay=0, priority=10)
    await send_welcome.enqueue("high@example.com", backend=backend, delay=0, priority=1)
    await send_welcome.enqueue("usual@example.com", backend=backend)  # priority 5

    await Queue(name, backend=backend, concurrency=1).run(burst=True)
    assert DONE.pop(name) == ["high@example.com", "usual@example.com", "low@example.com"]


async def test_the_tasks_page_requeue_example_runs_now_and_every_hour(name: str, define: Any) -> None:
    backend = InMemoryBackend()

    @define(suffix="maintenance")
    def cleanup_temp() -> None:
        DONE.setdefault(name, []).append("cleaned")

    # Schedule every 3600s (1h)
    job_id = await cleanup_temp.enqueue(backend, repeat_every=3600)

    queue = Queue(f"{name}-maintenance", backend=backend)
    [schedule] = await queue.repeatables()
    assert schedule.every_s == 3600
    assert 3600 <= schedule.next_run_at - (await queue.get_job(job_id)).created_at < 3601
    worker = queue.worker()
    assert await worker.process() is True  # the run now
    await worker.scheduler.tick(now=schedule.next_run_at)
    assert await worker.process() is True  # an hour later
    await worker.scheduler.tick(now=schedule.next_run_at + 3600)
    assert await worker.process() is True  # and the hour after
    assert DONE.pop(name) == ["cleaned"] * 3


async def test_arguments_that_do_not_fit_are_refused_at_enqueue_not_dead_lettered_later(
    name: str, define: Any
) -> None:
    backend = InMemoryBackend()

    @define()
    async def send_email(recipient: str, subject: str, body: str) -> None: ...

    with pytest.raises(TypeError, match="missing a required argument: 'body'"):
        await send_email.enqueue("alice@example.com", "Welcome!", backend=backend)
    assert sum((await Queue(name, backend=backend).counts()).values()) == 0
