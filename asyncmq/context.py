"""What a running task can ask about its own job: `current_job()` and `report_progress()`."""

from __future__ import annotations

import time
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from asyncmq.core.event import Event
from asyncmq.core.seam import event_emitter
from asyncmq.errors import SerializationError
from asyncmq.job import check_storable

if TYPE_CHECKING:
    from asyncmq.backends.base import BaseBackend
    from asyncmq.job import Job

__all__ = ["JobContext", "current_job", "report_progress"]


@dataclass(slots=True)
class JobContext:
    job: Job
    backend: BaseBackend

    @property
    def parent_results(self) -> dict[str, Any]:
        """The results of the jobs this one depends on (`depends_on`), by parent id: each
        copied in as its parent completed. A parent ignored after it failed
        (`on_parent_failure="ignore"`) has none."""
        deps = self.job.deps
        return dict(deps.get("results", {})) if deps else {}

    async def report_progress(self, progress: Any) -> None:
        """Store `progress` (any JSON value) on the job and emit `job:progress`. A value that
        cannot be stored raises `SerializationError` here, in the task, naming the problem."""
        check_storable(progress, "progress", "progress", SerializationError)
        self.job.progress = progress
        if await self.backend.save_progress(self.job):
            event_emitter.emit_job(Event.JOB_PROGRESS, self.job, moments={"progress_at": time.time()})


_current: ContextVar[JobContext | None] = ContextVar("asyncmq_current_job", default=None)


def current_job() -> JobContext:
    """The job the calling task is running for; raises outside a task."""
    ctx = _current.get()
    if ctx is None:
        raise RuntimeError("current_job() is only available inside a task run by an asyncmq worker")
    return ctx


async def report_progress(progress: Any) -> None:
    await current_job().report_progress(progress)
