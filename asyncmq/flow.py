"""Flows: a tree of jobs, across queues if need be, stored in one backend call.

    extract = FlowJob("etl.extract")
    transform = FlowJob("etl.transform", depends_on=[extract])
    load = FlowJob("etl.load", queue="loads", depends_on=[transform])
    ids = await FlowProducer(backend).add_flow("etl", [extract, transform, load])

Each child waits, `blocked`, for its parents (`asyncmq.dependencies`); a backend stores the
whole flow in one atomic step, so a flow is never half stored. Entries may also be mappings in
the form of `Queue.add_bulk`'s, with `queue` and `depends_on` keys.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from asyncmq.errors import InvalidJobError
from asyncmq.job import new_job_id
from asyncmq.queues import Queue
from asyncmq.results import JobId

if TYPE_CHECKING:
    from asyncmq.backends.base import BaseBackend

__all__ = ["FlowJob", "FlowProducer"]


@dataclass
class FlowJob:
    """One job of a flow. Its `id` is known before it is stored, so children can name it."""

    task_id: str
    args: Sequence[Any] = ()
    kwargs: Mapping[str, Any] | None = None
    #: Its parents: other `FlowJob`s, ids of this flow's jobs, or ids of jobs stored already.
    depends_on: Sequence[FlowJob | str | tuple[str, str]] = ()
    #: Its queue; default the flow's.
    queue: str | None = None
    job_id: str = field(default_factory=new_job_id)
    #: The options of `Queue.add` (delay, priority, retries, on_parent_failure, ...).
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return self.job_id


class FlowProducer:
    def __init__(self, backend: BaseBackend | None = None) -> None:
        self.backend = backend

    async def add_flow(self, queue: str, jobs: Sequence[FlowJob | Mapping[str, Any]]) -> list[JobId]:
        """Store `jobs` (parents before or after their children: they are put in order) in one
        backend call; return their ids in the order given. A cycle, an id given twice or a
        parent that is neither in the flow nor stored is an error, and nothing is stored."""
        entries = [_entry(job, index) for index, job in enumerate(jobs)]
        queues: dict[str, Queue] = {}

        def queue_of(name: str) -> Queue:
            if name not in queues:
                queues[name] = Queue(name, backend=self.backend)
            return queues[name]

        where = {entry.job_id: entry.queue or queue for entry in entries}
        if len(where) < len(entries):
            raise InvalidJobError("a flow names the same job id twice")
        built = {}
        for entry in entries:
            home = entry.queue or queue
            parents = [_parent(parent, where, home) for parent in entry.depends_on]
            options = {**entry.options, "job_id": entry.job_id}
            if parents:
                options["depends_on"] = parents
            built[entry.job_id] = queue_of(home).build_job(entry.task_id, entry.args, entry.kwargs, **options)
        ordered = _parents_first(built, where)
        await queue_of(queue).store(ordered)
        return [JobId(entry.job_id, queue_of(where[entry.job_id])) for entry in entries]


def _entry(job: FlowJob | Mapping[str, Any], index: int) -> FlowJob:
    if isinstance(job, FlowJob):
        return job
    if not isinstance(job, Mapping) or "task_id" not in job:
        raise InvalidJobError(f"flow entry {index} is neither a FlowJob nor a mapping with a 'task_id'")
    known = {"task_id", "args", "kwargs", "depends_on", "queue", "job_id"}
    options = {key: value for key, value in job.items() if key not in known}
    return FlowJob(
        job["task_id"],
        job.get("args", ()),
        job.get("kwargs"),
        job.get("depends_on", ()),
        job.get("queue"),
        job.get("job_id") or new_job_id(),
        options,
    )


def _parent(parent: FlowJob | str | tuple[str, str], where: Mapping[str, str], home: str) -> tuple[str, str]:
    """A parent as a (queue, id) pair: a job of the flow in its own queue, else one stored."""
    if isinstance(parent, FlowJob):
        return where.get(parent.job_id, parent.queue or home), parent.job_id
    if isinstance(parent, str):
        return where.get(parent, home), parent
    return parent


def _parents_first(built: Mapping[str, Any], where: Mapping[str, str]) -> list[Any]:
    """The flow's jobs with each after the parents it has in the flow; a cycle is refused."""
    ordered: list[Any] = []
    state: dict[str, str] = {}  # "visiting" or "done"

    def visit(job_id: str) -> None:
        if state.get(job_id) == "done":
            return
        if state.get(job_id) == "visiting":
            raise InvalidJobError(f"the flow's dependencies make a cycle through job {job_id}")
        state[job_id] = "visiting"
        job = built[job_id]
        for reference in job.deps["parents"] if job.deps else ():
            queue, parent_id = reference.split("/", 1)
            if parent_id in built and where[parent_id] == queue:
                visit(parent_id)
        state[job_id] = "done"
        ordered.append(job)

    for job_id in built:
        visit(job_id)
    return ordered
