"""What each control transition does to a stored job, decided once for every backend.

A job moves between states in two ways. An attempt's outcome (complete, retry, fail,
expire) is decided by the worker, which stores the whole outcome (`Backend.finish`). Every
other move (cancel, a manual retry, a release at shutdown, the recovery of a stalled job) is
a `Transition`: the states it may start from, the state it ends in, and the fields it stamps
with its moment, sets, clears and counts. A backend applies a transition atomically, in one
step with the state check, and never decides one itself: the in-memory backend calls
`Transition.apply`, the Redis backend sends `Transition.wire` to one generic Lua function.
The conformance suite checks every backend against `apply`.

Every transition also bumps `token`, so the worker that held the job can no longer store
anything for it (see `asyncmq.backends.base`).

Queue totals: each backend also keeps, per queue and task, monotonic counts of what happened
to its jobs (`TOTALS`), changed in the same step as the move they count, whoever made it (a
producer, a worker, the CLI, a recovery). A transition names the totals it adds to
(`Transition.totals`), a stored outcome adds to the one of its status (`OUTCOME_TOTALS`), a
stored job to `enqueued` and a claim to `claimed`. A release, a promotion of a due job, a
drain or a purge counts nothing: no job entered or left the queue's line by it. A
deduplicated add (`asyncmq.deduplication`) adds to `deduplicated` when nothing is stored
because another job holds the key, and to `debounced` (besides `enqueued`) when its job is
stored in the place of the key's delayed holder, in the step that decides it; both for the
task of the job given to the add.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache, cached_property
from types import MappingProxyType
from typing import Any

import orjson

from asyncmq.errors import StalledJobError
from asyncmq.job import TERMINAL_STATES, Job, JobState, encode_field

__all__ = [
    "CANCEL",
    "DEFAULT_RETENTION",
    "OUTCOME_TOTALS",
    "RELEASE",
    "REQUEUE_STALLED",
    "RETRY",
    "TOTALS",
    "Retention",
    "StallRecovery",
    "Transition",
    "stall_recovery",
]

_NOTHING: Mapping[str, Any] = MappingProxyType({})

#: The queue totals every backend keeps per (queue, task), in the order they are shown.
TOTALS = (
    "enqueued",
    "claimed",
    "completed",
    "retried",
    "failed",
    "expired",
    "cancelled",
    "stalled",
    "deduplicated",
    "debounced",
)

#: The total an attempt's stored outcome adds to, by the status it stores.
OUTCOME_TOTALS: Mapping[JobState, str] = MappingProxyType(
    {
        JobState.WAITING: "retried",
        JobState.DELAYED: "retried",
        JobState.COMPLETED: "completed",
        JobState.FAILED: "failed",
        JobState.EXPIRED: "expired",
        JobState.CANCELLED: "cancelled",
    }
)


@dataclass(frozen=True, eq=False)  # compared and hashed by identity: stores cache by it
class Transition:
    name: str
    #: The states a job may be in for the transition to apply; in any other, nothing happens.
    sources: frozenset[JobState]
    target: JobState
    #: Fields set to the transition's moment (`now`).
    stamp: tuple[str, ...] = ()
    #: Fields set to these values.
    assign: Mapping[str, Any] = field(default_factory=lambda: _NOTHING)
    #: Fields cleared (to None: a store deletes them).
    clear: tuple[str, ...] = ()
    #: Counters changed by these amounts.
    add: Mapping[str, int] = field(default_factory=lambda: _NOTHING)
    #: The queue totals (`TOTALS`) it adds one to, for the job's task.
    totals: tuple[str, ...] = ()

    def applies_to(self, job: Job) -> bool:
        return job.status in self.sources

    def apply(self, job: Job, now: float) -> None:
        """Change `job` as the transition says (the caller checked `applies_to`)."""
        for name, delta in self.add.items():
            setattr(job, name, getattr(job, name) + delta)
        for name in self.clear:
            setattr(job, name, None)
        for name, value in self.assign.items():
            setattr(job, name, dict(value) if isinstance(value, dict) else value)
        for name in self.stamp:
            setattr(job, name, now)
        job.status = self.target
        job.token += 1

    @cached_property
    def wire(self) -> str:
        """The transition as JSON for a store's own script: values in the stored (flat) form."""
        return orjson.dumps(
            {
                "name": self.name,
                "sources": {state.value: True for state in self.sources},
                "target": self.target.value,
                "stamp": list(self.stamp),
                "assign": {name: encode_field(name, value) for name, value in self.assign.items()},
                "clear": list(self.clear),
                "add": dict(self.add),
                "totals": list(self.totals),
            }
        ).decode()


#: Cancel a job not yet finished. A running attempt is stopped at its worker's next heartbeat.
CANCEL = Transition(
    "cancel",
    sources=frozenset({JobState.BLOCKED, JobState.WAITING, JobState.DELAYED, JobState.ACTIVE}),
    target=JobState.CANCELLED,
    stamp=("finished_at",),
    clear=("lease_until", "worker_id"),
    totals=("cancelled",),
)

#: Send a failed, expired or cancelled job back to `waiting`, as if never attempted.
RETRY = Transition(
    "retry",
    sources=TERMINAL_STATES - {JobState.COMPLETED},
    target=JobState.WAITING,
    stamp=("ready_at",),
    assign=MappingProxyType({"attempt": 0, "stalls": 0}),
    clear=("error", "result", "started_at", "finished_at"),
    totals=("enqueued",),  # back in line as a new job would be
)

#: Hand a claimed job back at shutdown: its attempt does not count, its place in line stays.
RELEASE = Transition(
    "release",
    sources=frozenset({JobState.ACTIVE}),
    target=JobState.WAITING,
    clear=("lease_until", "worker_id", "started_at", "delay_until"),
    add=MappingProxyType({"attempt": -1}),
)

_STALLED_CLEAR = ("lease_until", "worker_id", "delay_until")  # due now, not late

#: A job whose lease ran out goes back in line, due now.
REQUEUE_STALLED = Transition(
    "recover",
    sources=frozenset({JobState.ACTIVE}),
    target=JobState.WAITING,
    stamp=("ready_at",),
    clear=_STALLED_CLEAR,
    add=MappingProxyType({"stalls": 1}),
    totals=("stalled",),
)


@dataclass(frozen=True, slots=True)
class Retention:
    """How long finished jobs stay readable: by age and by count per queue and state."""

    ttl_s: float
    keep: int


#: The settings' default retention (`result_ttl_seconds`, `keep_finished_jobs`): what keeps the
#: children a removal failed when the backend is called without the queue's own.
DEFAULT_RETENTION = Retention(86_400.0, 10_000)


@dataclass(frozen=True)
class StallRecovery:
    """How to take back jobs whose lease ran out: `requeue` each, unless this stall would be
    its `max_stalls + 1`-th, then `fail` it (with its `StalledJobError` record)."""

    max_stalls: int
    retention: Retention
    requeue: Transition
    fail: Transition

    def transition_for(self, stalls_so_far: int) -> Transition:
        return self.fail if stalls_so_far + 1 > self.max_stalls else self.requeue


@cache  # one per queue's policy: its transitions' wire forms are encoded once
def stall_recovery(max_stalls: int, retention: Retention) -> StallRecovery:
    times = max_stalls + 1
    error = {
        "type": StalledJobError.__name__,
        "message": f"the job's worker vanished {times} times (max_stalls={max_stalls})",
    }
    fail = Transition(
        "recover",
        sources=frozenset({JobState.ACTIVE}),
        target=JobState.FAILED,
        stamp=("finished_at",),
        assign=MappingProxyType({"error": error}),
        clear=_STALLED_CLEAR,
        add=MappingProxyType({"stalls": 1}),
        totals=("stalled", "failed"),
    )
    return StallRecovery(max_stalls, retention, REQUEUE_STALLED, fail)
