"""asyncmq: an asyncio job queue whose every job lifecycle event is observable."""

from __future__ import annotations

from asyncmq.backoff import Backoff
from asyncmq.context import current_job, report_progress
from asyncmq.core.event import Event
from asyncmq.core.seam import event_emitter
from asyncmq.flow import FlowJob, FlowProducer
from asyncmq.job import Job, JobState
from asyncmq.queues import Queue
from asyncmq.tasks import task
from asyncmq.version import __version__
from asyncmq.worker import Worker

__all__ = [
    "Backoff",
    "Event",
    "FlowJob",
    "FlowProducer",
    "Job",
    "JobState",
    "Queue",
    "Worker",
    "__version__",
    "current_job",
    "event_emitter",
    "report_progress",
    "task",
]
