"""Repeatable jobs: a cron expression or a fixed interval, and the next time each fires."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from croniter import croniter

from asyncmq.backoff import Backoff
from asyncmq.errors import InvalidJobError, InvalidScheduleError, MalformedScheduleError
from asyncmq.limits import identifier, priority, retries, seconds, shown
from asyncmq.options import JOB_DEFAULTS, check_options

__all__ = ["Repeatable"]


@dataclass(slots=True)
class Repeatable:
    """A schedule definition. Its pending occurrence is stored as a delayed job whose id is
    derived from (key, time), so storing it twice stores it once: that is what makes an
    occurrence fire exactly once however many schedulers race for it.
    """

    queue: str
    task: str
    cron: str | None = None
    every_s: float | None = None
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    next_run_at: float = 0.0
    key: str = ""

    def __post_init__(self) -> None:
        """Check every field, so a schedule is refused before it is stored and a stored one
        that is damaged is found when read, not when it fires."""
        self.task = identifier(self.task, "task id")
        if (self.cron is None) == (self.every_s is None):
            raise InvalidScheduleError(
                f"repeatable {self.task!r} needs exactly one of cron= or every=, "
                f"got cron={shown(self.cron)}, every={shown(self.every_s)}"
            )
        if self.cron is not None:
            identifier(self.cron, "cron expression", InvalidScheduleError)
            if not croniter.is_valid(self.cron):
                raise InvalidScheduleError(f"invalid cron expression {self.cron!r} for task {self.task!r}")
        if self.every_s is not None:
            self.every_s = seconds(self.every_s, f"every= of repeatable {self.task!r}", allow_zero=False)
        for name, kind in (("args", list), ("kwargs", dict), ("options", dict)):
            if not isinstance(getattr(self, name), kind):
                raise InvalidScheduleError(
                    f"{name} must be a {kind.__name__}, got {shown(getattr(self, name))}"
                )
        _check_options(self.options, self.task)
        if isinstance(self.next_run_at, bool) or not isinstance(self.next_run_at, int | float):
            raise InvalidScheduleError(f"next_run_at must be a number, got {shown(self.next_run_at)}")
        if not self.key:
            identity = orjson.dumps([self.task, self.cron, self.every_s, self.args, self.kwargs])
            self.key = hashlib.sha1(identity).hexdigest()[:16]

    @classmethod
    def build(
        cls,
        queue: str,
        task: str,
        *,
        cron: str | None,
        every: float | timedelta | None,
        args: list[Any],
        kwargs: dict[str, Any],
        options: dict[str, Any],
    ) -> Repeatable:
        every_s = every.total_seconds() if isinstance(every, timedelta) else every
        return cls(queue, task, cron, every_s, args, kwargs, options)

    def next_after(self, moment: float) -> float:
        """The first firing time strictly after `moment` (epoch seconds, cron read in UTC)."""
        if self.every_s is not None:
            return moment + self.every_s
        assert self.cron is not None
        start = datetime.fromtimestamp(moment, UTC)
        return float(croniter(self.cron, start).get_next(float))

    def occurrence_id(self, at: float) -> str:
        return f"repeat:{self.key}:{int(at * 1000)}"

    def to_record(self) -> dict[str, Any]:
        return {
            "queue": self.queue,
            "task": self.task,
            "cron": self.cron,
            "every_s": self.every_s,
            "args": self.args,
            "kwargs": self.kwargs,
            "options": self.options,
            "next_run_at": self.next_run_at,
            "key": self.key,
        }

    @classmethod
    def from_record(cls, record: object, key: str) -> Repeatable:
        """Rebuild the schedule stored under `key`, or raise `MalformedScheduleError` saying
        what is wrong with it."""
        if not isinstance(record, dict):
            raise MalformedScheduleError(
                f"schedule {key!r} is unreadable: its record is a {type(record).__name__}, not a JSON object"
            )
        try:
            return cls(**{**record, "key": key})
        except (TypeError, InvalidJobError) as exc:
            raise MalformedScheduleError(f"schedule {key!r} is unreadable: {exc}") from None


def _check_options(options: dict[str, Any], task: str) -> None:
    """A schedule's stored options (`JobDefaults` as JSON values), checked as an enqueue
    would check them, so every occurrence it makes can be enqueued."""
    check_options(options, JOB_DEFAULTS, "the schedule of task {!r}", task)
    if options.get("priority") is not None:
        priority(options["priority"])
    if options.get("retries") is not None:
        retries(options["retries"])
    for name in ("ttl", "timeout"):
        seconds(options.get(name), name, allow_zero=False)
    backoff = options.get("backoff")
    try:
        Backoff.from_spec(backoff) if isinstance(backoff, dict) else Backoff.coerce(backoff)
    except TypeError as exc:
        raise InvalidScheduleError(f"backoff {shown(backoff)} is not a backoff: {exc}") from None
