"""AsyncMQ's flows page and the dependencies part of its jobs page (docs/ of dymmond/asyncmq),
written as they write them: `FlowProducer(backend).add_flow("pipeline", [a, b])` with
`asyncmq.jobs.Job(task_id=..., depends_on=[a.id])`, and `queue.add(..., depends_on=[...])`;
each checked for its effect: the child runs after its parent, never before. Each runs on the
in-memory backend and on Redis, as the pages' readers would."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from asyncmq.backends.base import BaseBackend
from asyncmq.backends.memory import InMemoryBackend
from asyncmq.errors import InvalidJobError, UnsupportedError
from asyncmq.flow import FlowProducer
from asyncmq.job import JobState
from asyncmq.jobs import Job
from asyncmq.queues import Queue
from asyncmq.registry import TASK_REGISTRY
from asyncmq.tasks import task

#: The tasks run, in order, by queue name.
RAN: dict[str, list[str]] = {}


@pytest.fixture
def pipeline_tasks(name: str) -> Iterator[None]:
    """The pages' `myapp.tasks.step_*` and `etl.*` tasks, recording their runs into `RAN[name]`."""
    registered = dict(TASK_REGISTRY)
    for task_id in ("myapp.tasks.step_a", "myapp.tasks.step_b", "etl.extract", "etl.transform", "etl.load"):

        async def run(task_id: str = task_id) -> str:
            RAN.setdefault(name, []).append(task_id)
            return task_id

        task(queue=name, name=task_id)(run)
    yield
    TASK_REGISTRY.clear()
    TASK_REGISTRY.update(registered)
    RAN.pop(name, None)


@pytest.fixture(params=["memory", "redis"])
def backend(request: pytest.FixtureRequest) -> BaseBackend:
    if request.param == "memory":
        return InMemoryBackend()
    found: BaseBackend = request.getfixturevalue("redis_backend")
    return found


async def _run_all(queue: Queue) -> None:
    worker = queue.worker()
    while await worker.process():
        pass


@pytest.mark.usefixtures("pipeline_tasks")
async def test_the_flows_page_example_runs_step_b_after_step_a(name: str, backend: BaseBackend) -> None:
    producer = FlowProducer(backend)

    a = Job(task_id="myapp.tasks.step_a", args=[], kwargs={})
    b = Job(task_id="myapp.tasks.step_b", args=[], kwargs={}, depends_on=[a.id])

    ids = await producer.add_flow(name, [a, b])

    assert ids == [a.id, b.id]
    queue = Queue(name, backend=backend)
    assert [job.id for job in await queue.list_jobs(JobState.BLOCKED)] == [b.id]
    await _run_all(queue)
    assert RAN[name] == ["myapp.tasks.step_a", "myapp.tasks.step_b"]


@pytest.mark.usefixtures("pipeline_tasks")
async def test_the_jobs_page_etl_chain_runs_in_order_whatever_the_order_given(
    name: str, backend: BaseBackend
) -> None:
    extract = Job(task_id="etl.extract", args=[], kwargs={})
    transform = Job(task_id="etl.transform", args=[], kwargs={}, depends_on=[extract.id])
    load = Job(task_id="etl.load", args=[], kwargs={}, depends_on=[transform.id])

    await FlowProducer(backend).add_flow(name, [load, transform, extract])

    await _run_all(Queue(name, backend=backend))
    assert RAN[name] == ["etl.extract", "etl.transform", "etl.load"]


@pytest.mark.usefixtures("pipeline_tasks")
async def test_depends_on_in_queue_add_keeps_the_child_until_its_parent_completed(
    name: str, backend: BaseBackend
) -> None:
    queue = Queue(name, backend=backend)
    parent_id = await queue.add("etl.extract", delay=3600)  # not due for an hour
    child_id = await queue.add("etl.load", depends_on=[parent_id])

    await _run_all(queue)
    assert RAN.get(name) is None  # the child did not run before its parent
    assert (await queue.get_job(child_id)).status is JobState.BLOCKED  # type: ignore[union-attr]


@pytest.mark.usefixtures("pipeline_tasks")
async def test_a_failed_parent_leaves_its_child_blocked_as_asyncmq_does_when_asked(
    name: str, backend: BaseBackend
) -> None:
    """AsyncMQ keeps the descendants of a failed parent blocked; here that is
    `on_parent_failure="wait"` (the default fails them, naming the parent)."""
    queue = Queue(name, backend=backend)
    parent_id = await queue.add("etl.extract", delay=3600)
    kept = await queue.add("etl.load", depends_on=[parent_id], on_parent_failure="wait")
    failed = await queue.add("etl.load", depends_on=[parent_id])
    await queue.cancel(parent_id)

    assert (await queue.get_job(kept)).status is JobState.BLOCKED  # type: ignore[union-attr]
    failed_job: Any = await queue.get_job(failed)
    assert (failed_job.status, failed_job.error["type"]) == (JobState.FAILED, "ParentFailedError")


def test_what_a_flow_job_cannot_mean_here_is_refused_naming_what_to_write() -> None:
    with pytest.raises(InvalidJobError, match="write max_retries="):
        Job(task_id="etl.load", retries=3)
    with pytest.raises(UnsupportedError, match="add_repeatable"):
        Job(task_id="etl.load", repeat_every=60)
    with pytest.raises(UnsupportedError, match="not deduplicated"):
        Job(task_id="etl.load", deduplication={"id": "x"})
    assert Job(task_id="etl.load", max_retries=4).options == {"retries": 4}
