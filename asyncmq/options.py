"""Enqueue options, declared once.

`Queue.add`, the entries of `Queue.add_bulk`, `Queue.add_repeatable`, the `@task(...)`
defaults and `task.options(...)` all take these names, typed by these dictionaries, and
`check_options` refuses any other at run time, where type hints cannot. Their values are held to
`asyncmq.limits` (durations finite and at most 1e9 s, ids at most 256 characters).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Literal, TypedDict

from asyncmq.backoff import Backoff, BackoffFunction
from asyncmq.deduplication import DeduplicationOptions
from asyncmq.errors import InvalidJobError

__all__ = [
    "ENQUEUE_OPTIONS",
    "JOB_DEFAULTS",
    "EnqueueOptions",
    "JobDefaults",
    "ParentFailure",
    "check_options",
]

#: What a parent that ends without completing does to its children (`asyncmq.dependencies`).
ParentFailure = Literal["fail", "ignore", "wait"]


class JobDefaults(TypedDict, total=False):
    """What a task or a schedule sets for each of its jobs, and one enqueue may override."""

    #: Lower numbers run first, -1000 to 1000; default `Settings.default_priority`.
    priority: int | None
    #: Extra attempts after a failure, 0 to 1,000,000.
    retries: int
    #: The wait between attempts: a `Backoff`; a number, an exponential base (the n-th retry
    #: waits `backoff ** n` s); a `timedelta`, a fixed wait; or a module-level function
    #: `(attempt) -> seconds`.
    backoff: Backoff | BackoffFunction | float | timedelta | None
    #: A job not started within this long expires.
    ttl: float | timedelta | None
    #: An attempt running longer fails with `JobTimeoutError`.
    timeout: float | timedelta | None


class EnqueueOptions(JobDefaults, total=False):
    """Everything one enqueue may say."""

    #: Run no sooner than this long from now.
    delay: float | timedelta | None
    #: The job's id (an id that exists in the queue adds nothing); default a random one.
    job_id: str | None
    #: At most one job at a time per key (`asyncmq.deduplication.DeduplicationOptions`):
    #: a duplicate stores nothing and its caller gets the id of the job holding the key.
    deduplication: DeduplicationOptions | None
    #: AsyncMQ's older name of `deduplication`.
    debounce: DeduplicationOptions | None
    #: Jobs that must complete first: ids in this queue, ids `add` returned, or (queue, id)
    #: pairs. The job is stored `blocked` until then (`asyncmq.dependencies`).
    depends_on: Sequence[str | tuple[str, str]] | None
    #: What a parent that fails, expires or is cancelled does to this job: "fail" it (the
    #: default), "ignore" the parent, or "wait" blocked for the parent's manual retry.
    on_parent_failure: ParentFailure | None


JOB_DEFAULTS = frozenset(JobDefaults.__optional_keys__)
ENQUEUE_OPTIONS = frozenset(EnqueueOptions.__optional_keys__)


def check_options(given: Mapping[str, object], allowed: frozenset[str], where: str, *about: object) -> None:
    """Refuse options not in `allowed`; `where.format(*about)` names the call in the error
    (formatted only then: this runs on every enqueue)."""
    if given.keys() <= allowed:
        return
    unknown = sorted(set(given) - allowed)
    raise InvalidJobError(
        f"{where.format(*about)} got unknown options {unknown}; the options are {sorted(allowed)}"
    )
