"""AsyncMQ's `asyncmq.jobs.Job`, as its flows are written: `Job(task_id=..., args=[], kwargs={},
depends_on=[a.id])` handed to `FlowProducer.add_flow`. Here that builds a `FlowJob`: the stored
job is `asyncmq.job.Job`, which producers never build themselves. AsyncMQ's fields that mean the
same are taken under its names; one that cannot mean here what it means there is refused,
naming what to write instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from asyncmq.errors import InvalidJobError, UnsupportedError
from asyncmq.flow import FlowJob
from asyncmq.job import new_job_id

__all__ = ["Job"]


def Job(  # AsyncMQ's name for it, called as a class
    task_id: str,
    args: Sequence[Any] | None = None,
    kwargs: Mapping[str, Any] | None = None,
    *,
    max_retries: int | None = None,
    backoff: Any = None,
    ttl: float | timedelta | None = None,
    job_id: str | None = None,
    priority: int | None = None,
    depends_on: Sequence[str] | None = None,
    retries: int = 0,
    created_at: float | None = None,
    repeat_every: float | None = None,
    deduplication: Mapping[str, Any] | None = None,
) -> FlowJob:
    """A job of a flow, in AsyncMQ's terms: `max_retries` is the number of retries allowed
    (`retries=` here), `retries` the attempts made so far (0 for a new job)."""
    if retries:
        raise InvalidJobError(
            f"Job(retries={retries!r}): AsyncMQ's retries counts attempts already made; a new job has "
            "made none. For the retries allowed, write max_retries="
        )
    if repeat_every is not None:
        raise UnsupportedError(
            "Job(repeat_every=...) in a flow: a repeating job has no single end for children to wait "
            "for; add a schedule with queue.add_repeatable(task_id, every=...) instead"
        )
    if deduplication is not None:
        raise UnsupportedError(
            "Job(deduplication=...) in a flow: a flow's jobs are not deduplicated; deduplicate the "
            "add that starts the flow, or give the jobs fixed job_ids"
        )
    options: dict[str, Any] = {
        name: value
        for name, value in (
            ("retries", max_retries),
            ("backoff", backoff),
            ("ttl", ttl),
            ("priority", priority),
        )
        if value is not None
    }
    del created_at  # the time it is stored, here
    return FlowJob(
        task_id,
        list(args or ()),
        dict(kwargs or {}),
        list(depends_on or ()),
        job_id=job_id or new_job_id(),
        options=options,
    )
