"""Settings classes written with AsyncMQ's field names, as one ported from it is.

A field ignored without a word is the worst outcome of a port: the class loads, and the
limit, the tracing or the recovery it asked for silently is not there. So every field of
AsyncMQ's `Settings` is one of three things here: renamed (it means what one of ours means,
and sets ours), inherent (accepted only with the value that describes what always happens
here), or refused with why and what to write instead. Any other field a settings class sets
is a mistake too, named with its class and the closest known name. `docs/asyncmq-migration.md`
has the table.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable, Iterator
from typing import Any

from asyncmq.errors import ConfigurationError
from asyncmq.limits import MAX_COUNT

__all__ = ["LOG_LEVELS", "RENAMED", "class_fields", "closest", "converted", "refusal"]

#: The levels `log_level` (AsyncMQ's `logging_level`) and `asyncmq worker start --log-level` take.
LOG_LEVELS = ("debug", "info", "warning", "error")


def _same(name: str, value: object) -> object:
    return value


def _payload_limit(name: str, value: object) -> object:
    """AsyncMQ's `None` turns its guard off: here the largest limit the setting takes."""
    if value is None:
        return MAX_COUNT
    if isinstance(value, int) and not isinstance(value, bool) and value < 0:
        raise ConfigurationError(f"{name} = {value!r} must be None (no limit) or a positive number of bytes")
    return value


#: AsyncMQ's name -> (ours, conversion): the same meaning under another name.
RENAMED: dict[str, tuple[str, Callable[[str, object], object]]] = {
    "max_job_payload_bytes": ("max_payload_bytes", _payload_limit),
    "tracing_enabled": ("tracing", _same),
    "stalled_threshold": ("lease_seconds", _same),
    "tasks": ("app_modules", _same),  # checked with the others (`asyncmq.conf._CHECKS`)
    "logging_level": ("log_level", _same),
}

_LEASE = (
    "stalled jobs are always recovered here: a running job's lease lapses lease_seconds after its "
    "worker's last heartbeat (stalled_threshold sets it), then any worker takes the job back"
)
_BACKEND = "build the backend in the settings instead: backend = {example}"

#: Fields accepted only with this value, the one that describes what always happens here.
_INHERENT: dict[str, tuple[object, str]] = {
    "enable_stalled_check": (True, f"{_LEASE}; remove the field"),
    "debug": (False, "there is no debug mode here: for verbose logs set log_level = 'debug'"),
    "sandbox_enabled": (
        False,
        "there is no sandbox here: tasks run in the worker's event loop; run unsafe or CPU-bound work "
        "in a process pool from the task",
    ),
    "json_dumps": (
        json.dumps,
        "cannot be honoured: each backend encodes job records itself (JSON, read by every worker, the "
        "CLI and the dashboards), so a custom encoder cannot apply; pass JSON-compatible arguments "
        "(convert dates, decimals and objects to strings or dicts) and remove json_dumps/json_loads",
    ),
    "json_loads": (
        json.loads,
        "cannot be honoured: each backend decodes job records itself, into JSON values; convert them "
        "back in the task and remove json_dumps/json_loads",
    ),
}

#: Fields refused whatever their value: why, and what to write instead.
_REFUSED: dict[str, str] = {
    "stalled_check_interval": (
        "the recovery scan runs every lease_seconds / 2 and a paused queue is seen at once; "
        "set lease_seconds (or stalled_threshold) and remove this field"
    ),
    "heartbeat_ttl": (
        "workers beat every lease_seconds / 3 and are listed until lease_seconds after their last "
        "beat; set lease_seconds (or stalled_threshold) and remove this field"
    ),
    "secret_key": "there is no web dashboard here (the Grafana dashboards read the metrics); remove it",
    "sandbox_default_timeout": "there is no sandbox here; a job's own timeout is the task's timeout=",
    "sandbox_ctx": "there is no sandbox here; remove it",
    "worker_on_startup": (
        "there are no worker hooks in the settings: listen to the worker:started event "
        "(event_emitter.on('worker:started', ...)) or run the setup before starting the worker"
    ),
    "worker_on_shutdown": (
        "there are no worker hooks in the settings: listen to the worker:stopped event "
        "(event_emitter.on('worker:stopped', ...)) or run the cleanup after the worker returns"
    ),
    "tracing_tracer_name": "span names are fixed here (docs/observability.md); remove it",
    "tracing_span_prefix": "span names are fixed here (docs/observability.md); remove it",
    "asyncmq_postgres_backend_url": _BACKEND.format(example="'postgresql://user@host/db'"),
    "asyncmq_postgres_pool_options": _BACKEND.format(example="PostgresBackend(url, max_connections=...)"),
    "jobs_table_schema": _BACKEND.format(example="PostgresBackend(url, schema='asyncmq')"),
    "postgres_jobs_table_name": "table names are fixed here; "
    + _BACKEND.format(example="PostgresBackend(url, schema=...)"),
    "postgres_repeatables_table_name": "table names are fixed here; remove it",
    "postgres_cancelled_jobs_table_name": "table names are fixed here; remove it",
    "postgres_workers_heartbeat_table_name": "table names are fixed here; remove it",
    "asyncmq_mongodb_backend_url": _BACKEND.format(example="'mongodb://host:27017'"),
    "asyncmq_mongodb_database_name": _BACKEND.format(example="MongoBackend(url, database='asyncmq')"),
    "version": "it is the library's own version, not a setting; remove it",
    "is_logging_setup": "it is the library's own state, not a setting; remove it",
}

FOREIGN_NAMES = frozenset(RENAMED) | frozenset(_INHERENT) | frozenset(_REFUSED)


def refusal(name: str, value: object) -> str | None:
    """Why AsyncMQ's field `name` set to `value` cannot be taken here, or `None` if it can."""
    if name in _INHERENT:
        accepted, why = _INHERENT[name]
        return None if value is accepted or value == accepted else why
    return _REFUSED.get(name)


def converted(name: str, value: object) -> tuple[str, object]:
    """AsyncMQ's renamed field as (our name, our value)."""
    ours, convert = RENAMED[name]
    return ours, convert(name, value)


def closest(name: str, known: set[str], cutoff: float = 0.6) -> str | None:
    matches = difflib.get_close_matches(name, sorted(known | FOREIGN_NAMES), n=1, cutoff=cutoff)
    return matches[0] if matches else None


def _is_field(value: object) -> bool:
    """Methods, properties and nested classes are a class's behaviour, not its fields."""
    return not (callable(value) or isinstance(value, (property, classmethod, staticmethod)))


def class_fields(cls: type, base: type) -> Iterator[tuple[type, str, Any, bool]]:
    """(defining class, name, value, annotated) of each public field the classes between `cls`
    and `base` (not included) set, the most derived value of each name only."""
    seen: set[str] = set()
    for klass in cls.__mro__:
        if klass is base or klass is object:
            break
        annotated = getattr(klass, "__annotations__", {})
        for name, value in vars(klass).items():
            if name.startswith("_") or name in seen:
                continue
            seen.add(name)
            if name in FOREIGN_NAMES or _is_field(value):
                yield klass, name, value, name in annotated
