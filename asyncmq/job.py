"""The job: one schema, defined once, that every backend stores and every event describes."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields
from enum import StrEnum
from operator import attrgetter
from typing import Any

import orjson

from asyncmq.errors import (
    InvalidQueueNameError,
    MalformedJobError,
    PayloadTooLargeError,
    SerializationError,
)
from asyncmq.limits import shown, unstorable

__all__ = [
    "FIELD_KINDS",
    "OUTCOME_FIELDS",
    "TERMINAL_STATES",
    "Job",
    "JobState",
    "check_storable",
    "decode_flat",
    "encode_arguments",
    "encode_field",
    "encode_flat",
    "malformed_field",
    "malformed_reason",
    "new_job_id",
    "validate_queue_name",
]


class JobState(StrEnum):
    WAITING = "waiting"
    DELAYED = "delayed"
    ACTIVE = "active"
    COMPLETED = "completed"
    FAILED = "failed"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    #: Stored to run after its parents (`Queue.add(depends_on=...)`): see `asyncmq.dependencies`.
    BLOCKED = "blocked"


TERMINAL_STATES = frozenset({JobState.COMPLETED, JobState.FAILED, JobState.EXPIRED, JobState.CANCELLED})

#: A job's last error belongs in its payload only while it explains the status: failed, or
#: back in line for a retry.
_STATES_WITH_ERROR = frozenset({JobState.FAILED, JobState.WAITING, JobState.DELAYED})
_TIMESTAMPS = ("created_at", "delay_until", "ready_at", "started_at", "finished_at")


_QUEUE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:\-]{0,127}")


def validate_queue_name(name: object) -> str:
    if not isinstance(name, str) or not _QUEUE_NAME.fullmatch(name):
        raise InvalidQueueNameError(
            f"invalid queue name {shown(name)}: use 1-128 letters, digits, '_', '.', ':' or '-', "
            "starting with a letter or digit"
        )
    return name


def new_job_id() -> str:
    """128 random bits as 32 hex digits: the shape of a uuid4 hex, four times cheaper."""
    return os.urandom(16).hex()


def _maybe_unstorable(data: bytes) -> bool:
    """Whether encoded JSON may hide what `unstorable` looks for: orjson writes NaN and
    infinities as `null` and a NUL as `\\u0000` (a backslash, 92, is searched first: `find`
    and a byte's membership cost a third of `in` on bytes, on every enqueue)."""
    return data.find(b"null") != -1 or (92 in data and data.find(b"\\u0000") != -1)


def encode_arguments(args: list[Any], kwargs: dict[str, Any], task_id: str, limit: int) -> bytes:
    """JSON-encode `[args, kwargs]` or raise an error naming the task and what in them is wrong."""
    try:
        data = orjson.dumps([args, kwargs])
    except TypeError as exc:
        raise SerializationError(
            f"arguments of task {task_id!r} cannot be serialized to JSON: {exc}"
        ) from None
    if len(data) > limit:
        raise PayloadTooLargeError(
            f"arguments of task {task_id!r} are {len(data)} bytes encoded; the limit is {limit} bytes"
        )
    if _maybe_unstorable(data):
        problem = unstorable(args, "args") or unstorable(kwargs, "kwargs")
        if problem is not None:
            raise SerializationError(f"arguments of task {task_id!r} cannot be stored: they hold {problem}")
    return data


def check_storable(value: Any, what: str, path: str, error: type[Exception]) -> None:
    """Raise `error` naming `what` if `value` cannot be stored as the job's `path` (its
    result, its progress): not JSON, or holding NaN, an infinity or a NUL character, which
    JSON or PostgreSQL would lose or refuse."""
    try:
        data = orjson.dumps(value)
    except TypeError as exc:
        raise error(f"{what} cannot be serialized to JSON: {exc}") from None
    if _maybe_unstorable(data):
        problem = unstorable(value, path)
        if problem is not None:
            raise error(f"{what} cannot be stored: it holds {problem}")


@dataclass(slots=True)
class Job:
    """A job as stored. `attempt` counts attempts begun; `token` fences stale workers.

    Every claim, recovery and cancellation bumps `token`; a backend accepts a worker's
    result only while the stored token still equals the one the worker claimed with.
    """

    id: str
    queue: str
    task: str
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    status: JobState = JobState.WAITING
    priority: int = 5
    max_retries: int = 0
    attempt: int = 0
    backoff: dict[str, Any] | None = None
    ttl_s: float | None = None
    timeout_s: float | None = None
    created_at: float = 0.0
    delay_until: float | None = None
    ready_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    lease_until: float | None = None
    worker_id: str | None = None
    token: int = 0
    stalls: int = 0
    result: Any = None
    error: dict[str, str] | None = None
    progress: Any = None
    repeat_key: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    #: Its parents and dependents, if it has any (`asyncmq.dependencies`); None for most jobs.
    deps: dict[str, Any] | None = None

    def is_expired(self, now: float) -> bool:
        return self.ttl_s is not None and now > self.created_at + self.ttl_s

    def timestamps(self) -> dict[str, float]:
        """Every moment known so far, in epoch seconds, as the event contract names them."""
        out: dict[str, float] = {}
        for name in _TIMESTAMPS:
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out

    def event_payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "id": self.id,
            "queue": self.queue,
            "task": self.task,
            "status": self.status.value,
            "attempt": max(self.attempt, 1),
            "max_retries": self.max_retries,
            "priority": self.priority,
            "timestamps": self.timestamps(),
        }
        if self.error is not None and self.status in _STATES_WITH_ERROR:
            payload["error"] = {"type": self.error["type"], "message": self.error["message"]}
        if self.progress is not None:
            payload["progress"] = self.progress
        if self.repeat_key is not None:
            payload["repeat_key"] = self.repeat_key
        if self.meta:
            payload["meta"] = self.meta
        return payload

    def clone(self) -> Job:
        """A shallow copy; five times cheaper than `copy.copy` on a slotted dataclass."""
        return Job(*_all_fields(self))

    def to_record(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _FIELD_NAMES}

    @classmethod
    def from_record(cls, record: Any, *, typed_scalars: bool = False) -> Job:
        """Rebuild a job from a stored record, or raise `MalformedJobError` naming the field
        that is wrong: a worker fails such a job at once with that reason. `typed_scalars`:
        the store already holds every text and number field in its type (typed columns, the
        flat form's converters), so only the JSON fields are checked, a third of the cost."""
        if not isinstance(record, dict):
            raise MalformedJobError(f"a job record must be a JSON object, not {type(record).__name__}")
        missing = [name for name in ("id", "queue", "task") if name not in record]
        if missing:
            raise MalformedJobError(f"job record {record.get('id', '?')!r} lacks {', '.join(missing)}")
        if not _FIELD_NAMES_SET.issuperset(record):
            unknown = sorted(set(record) - _FIELD_NAMES_SET)
            raise MalformedJobError(f"job record {record['id']!r} has unknown fields {unknown}")
        job = cls(**record)
        # A dict: Enum lookups are slow. Text only: a list or a mapping cannot be looked up.
        status = _STATES.get(job.status) if isinstance(job.status, str) else None
        if status is None:
            raise MalformedJobError(f"job record {job.id!r} has a malformed status: {job.status!r}")
        job.status = status
        wrong = _wrong_field(job, _JSON_CHECKED if typed_scalars else _ALL_CHECKED)
        if wrong is not None:
            raise MalformedJobError(malformed_reason(f"job record {job.id!r}", wrong, getattr(job, wrong)))
        return job


#: Fields that carry the job's own data (arguments, result, progress, metadata, an error's
#: text): a malformed one is described by its type only, since reasons reach logs and events.
_DATA_FIELDS = frozenset({"args", "kwargs", "result", "error", "progress", "meta", "backoff", "deps"})


def malformed_reason(where: str, field: str, value: object) -> str:
    """Why a stored job cannot be read: `where` (e.g. "job record 'ab12'") has a malformed
    `field`, shown with its value, or only its type for a field of the job's own data."""
    if field not in _DATA_FIELDS:
        shown = f"{value!r:.100}"
    else:
        shown = "null" if value is None else f"a {type(value).__name__}"
    return f"{where} has a malformed {field}: {shown}"


def malformed_field(job: Job) -> str | None:
    """The first field of `job` holding a value of the wrong type, if any: for a store that
    keeps jobs as objects, which no decoding checks. The fields' types taken together are
    compared with the few combinations seen valid before: one lookup, not one per field."""
    kinds = tuple(map(type, _all_fields(job)))
    if kinds in _VALID_KINDS:
        wrong = None
    elif type(job.status) is not JobState:
        return "status"
    else:
        wrong = _wrong_field(job, _ALL_CHECKED)
        if wrong is None and len(_VALID_KINDS) < 1024:  # bounded: each optional field doubles them
            _VALID_KINDS.add(kinds)
    error = job.error
    if wrong is None and error is not None and not _error_record_is_valid(error):
        return "error"
    return wrong


def _error_record_is_valid(error: dict[str, Any]) -> bool:
    return type(error.get("type")) is str and type(error.get("message")) is str


def _wrong_field(job: Job, checked: tuple[tuple[str, ...], Callable[[Job], Any]]) -> str | None:
    """The first of the `checked` fields whose value has a type the field cannot hold, if
    any. Types are compared exactly (a set lookup each): this runs on every claimed job."""
    names, values = checked
    for name, value in zip(names, values(job), strict=True):
        if type(value) not in _FIELD_TYPES[name]:
            return name
    error = job.error
    if error is not None and not _error_record_is_valid(error):
        return "error"
    return None


_FIELD_NAMES = tuple(f.name for f in fields(Job))
_FIELD_NAMES_SET = frozenset(_FIELD_NAMES)
_STATES: dict[object, JobState] = {state.value: state for state in JobState}
_all_fields = attrgetter(*_FIELD_NAMES)
_NONE: type = type(None)
_OPTIONAL_FLOAT: frozenset[type] = frozenset({float, int, _NONE})
_OPTIONAL_STR: frozenset[type] = frozenset({str, _NONE})
#: The types each field may hold as read back (`result` and `progress` hold any JSON value).
_FIELD_TYPES: dict[str, frozenset[type]] = {
    "id": frozenset({str}),
    "queue": frozenset({str}),
    "task": frozenset({str}),
    "args": frozenset({list}),
    "kwargs": frozenset({dict}),
    "priority": frozenset({int}),
    "max_retries": frozenset({int}),
    "attempt": frozenset({int}),
    "backoff": frozenset({dict, _NONE}),
    "ttl_s": _OPTIONAL_FLOAT,
    "timeout_s": _OPTIONAL_FLOAT,
    "created_at": frozenset({float, int}),
    "delay_until": _OPTIONAL_FLOAT,
    "ready_at": _OPTIONAL_FLOAT,
    "started_at": _OPTIONAL_FLOAT,
    "finished_at": _OPTIONAL_FLOAT,
    "lease_until": _OPTIONAL_FLOAT,
    "worker_id": _OPTIONAL_STR,
    "token": frozenset({int}),
    "stalls": frozenset({int}),
    "error": frozenset({dict, _NONE}),
    "repeat_key": _OPTIONAL_STR,
    "meta": frozenset({dict}),
    "deps": frozenset({dict, _NONE}),
}
#: Combinations of field types (`malformed_field`) found valid so far.
_VALID_KINDS: set[tuple[type, ...]] = set()
_ALL_CHECKED_NAMES = tuple(name for name in _FIELD_NAMES if name in _FIELD_TYPES)
_ALL_CHECKED = (_ALL_CHECKED_NAMES, attrgetter(*_ALL_CHECKED_NAMES))
_JSON_CHECKED_NAMES = ("args", "kwargs", "backoff", "error", "meta", "deps")
_JSON_CHECKED = (_JSON_CHECKED_NAMES, attrgetter(*_JSON_CHECKED_NAMES))


# -- the flat form: one string per field, for stores that keep a job as a hash -----------
_STR_FIELDS = frozenset({"id", "queue", "task", "worker_id", "repeat_key", "status"})
_INT_FIELDS = frozenset({"priority", "max_retries", "attempt", "token", "stalls"})
_FLOAT_FIELDS = frozenset(
    {
        "ttl_s",
        "timeout_s",
        "created_at",
        "delay_until",
        "ready_at",
        "started_at",
        "finished_at",
        "lease_until",
    }
)
_JSON_FIELDS = frozenset(_FIELD_NAMES) - _STR_FIELDS - _INT_FIELDS - _FLOAT_FIELDS
#: Each field's kind ("str", "int", "float" or "json"), in field order: what a store with typed
#: columns needs to lay a job out.
FIELD_KINDS: dict[str, str] = {
    name: "str"
    if name in _STR_FIELDS
    else "int"
    if name in _INT_FIELDS
    else "float"
    if name in _FLOAT_FIELDS
    else "json"
    for name in _FIELD_NAMES
}


_DEFAULTS = {
    f.name: f.default if f.default is not MISSING else f.default_factory()  # type: ignore[operator]
    for f in fields(Job)
    if f.default is not MISSING or f.default_factory is not MISSING
}
#: Written even at their defaults: stores read them without knowing the defaults.
_ALWAYS_WRITTEN = frozenset({"id", "queue", "task", "status", "priority"})
_SKIPPABLE = {name: value for name, value in _DEFAULTS.items() if name not in _ALWAYS_WRITTEN}


#: What an attempt's outcome may change besides its status, in the order `finish` sends them.
OUTCOME_FIELDS = ("started_at", "finished_at", "delay_until", "ready_at", "result", "error", "progress")


def encode_field(name: str, value: Any) -> str:
    """One field in the flat form: numbers by `repr` (an exact round trip), text as it is,
    the rest as JSON."""
    if name in _JSON_FIELDS:
        return orjson.dumps(value).decode()
    return value if isinstance(value, str) else repr(value)


def encode_flat(job: Job) -> dict[str, str]:
    """Every field that is set, by `encode_field`. `None` fields and fields at their default
    are left out (fewer bytes to write and store), so a store can clear a field by deleting it."""
    flat: dict[str, str] = {}
    for name, value in zip(_FIELD_NAMES, _all_fields(job), strict=True):
        if value is None or (name in _SKIPPABLE and value == _SKIPPABLE[name]):
            continue
        # `encode_field` inline: this runs for every field of every job enqueued.
        if name in _JSON_FIELDS:
            flat[name] = orjson.dumps(value).decode()
        else:
            flat[name] = value if isinstance(value, str) else repr(value)
    return flat


def decode_flat(flat: dict[str, str]) -> Job:
    """The inverse of `encode_flat`, raising `MalformedJobError` on anything it did not write."""
    record: dict[str, Any] = {}
    for name, raw in flat.items():
        known = _DECODERS.get(name)
        if known is None:
            record[name] = raw  # reported below
            continue
        field, convert = known
        try:
            record[field] = raw if convert is None else convert(raw)
        except ValueError:
            raise MalformedJobError(
                malformed_reason(f"stored job {flat.get('id', '?')!r}", name, raw)
            ) from None
    return Job.from_record(record, typed_scalars=True)


_CONVERTERS: dict[str, Callable[[str], Any]] = {
    **dict.fromkeys(_INT_FIELDS, int),
    **dict.fromkeys(_FLOAT_FIELDS, float),
    **dict.fromkeys(_JSON_FIELDS, orjson.loads),
}
#: How each stored field is read back (None: text as it is), under the field's own name
#: object: `Job(**record)` matches a keyword that *is* its parameter's name without comparing
#: strings, and a store's reply brings fresh strings, each compared with up to 27 names.
#: One lookup a field, on the path of every claimed job.
_DECODERS: dict[str, tuple[str, Callable[[str], Any] | None]] = {
    name: (name, _CONVERTERS.get(name)) for name in _FIELD_NAMES
}
