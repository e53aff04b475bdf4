"""What asyncmq accepts as input: every bound, defined once, and the checks that apply it.

Each check either returns the value in its stored form or raises an `InvalidJobError`
naming the value's role and showing the value, cut short when it is long (a 10 MB id makes
a one-line message, not a 10 MB one). The bounds keep every backend able to store and order
what it is given: an id is written in several keys and indexes, a Redis line is ordered by
`priority * 2**40 + arrival` (exact in a double only while the priority stays small), and
PostgreSQL refuses NUL characters in text and JSON.
"""

from __future__ import annotations

import math
import operator
import reprlib
from collections.abc import Mapping, Sequence
from dataclasses import fields, is_dataclass
from datetime import timedelta
from typing import Any

from asyncmq.errors import InvalidJobError, InvalidScheduleError

__all__ = [
    "MAX_CONCURRENCY",
    "MAX_COUNT",
    "MAX_ID_LENGTH",
    "MAX_RETRIES",
    "MAX_SECONDS",
    "PRIORITY_MAX",
    "PRIORITY_MIN",
    "arguments",
    "identifier",
    "integer",
    "priority",
    "retries",
    "seconds",
    "shown",
    "unstorable",
]

#: Job ids, task ids and cron expressions hold at most this many characters.
MAX_ID_LENGTH = 256
#: Priorities lie in this range (lower runs first).
PRIORITY_MIN, PRIORITY_MAX = -1000, 1000
#: A job retries at most this many times.
MAX_RETRIES = 1_000_000
#: A queue's workers run at most this many attempts at once each.
MAX_CONCURRENCY = 100_000
#: Other counts (a rate limit, finished jobs kept) are at most this.
MAX_COUNT = 1_000_000_000
#: Durations (delay, ttl, timeout, every, backoff) are at most this many seconds (about 31
#: years): anything longer is a mistake, and `None` says "no limit" where one is optional.
MAX_SECONDS = 1_000_000_000

_SHOWN_CHARS = 60
_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = _SHOWN_CHARS


def shown(value: object) -> str:
    """`repr(value)` for an error message, cut short: a long string keeps its first
    characters and says how long it was."""
    if isinstance(value, str) and len(value) > _SHOWN_CHARS:
        return f"{value[:_SHOWN_CHARS] + '...'!r} ({len(value)} characters)"
    return _REPR.repr(value)


def seconds(value: object, what: str, *, allow_zero: bool = True) -> float | None:
    """A duration given as seconds or a `timedelta`, as float seconds (`None` stays `None`).
    Refuses what is not a number (a string, a bool), NaN, infinities, negatives (and zero
    unless `allow_zero`) and more than `MAX_SECONDS`, naming `what`."""
    if value is None:
        return None
    if isinstance(value, timedelta):
        secs = value.total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        try:
            secs = float(value)
        except OverflowError:  # an int past a double's range
            secs = math.inf
    else:
        raise InvalidScheduleError(f"{what} must be a number of seconds or a timedelta, got {shown(value)}")
    if not math.isfinite(secs):
        raise InvalidScheduleError(f"{what} must be a finite number of seconds, got {shown(value)}")
    if secs < 0 or (secs == 0 and not allow_zero):
        raise InvalidScheduleError(
            f"{what} must be {'>=' if allow_zero else '>'} 0 seconds, got {shown(value)}"
        )
    if secs > MAX_SECONDS:
        raise InvalidScheduleError(f"{what} must be at most {MAX_SECONDS} seconds, got {shown(value)}")
    return secs


def integer(value: object, what: str, low: int, high: int) -> int:
    """An integer in [low, high]: an `int` or anything with `__index__` (an `IntEnum`, a
    NumPy integer), returned as a plain `int`. A bool, a float (even 2.0) or a string is refused."""
    if not isinstance(value, bool):
        try:
            number = operator.index(value)  # type: ignore[arg-type]
        except TypeError:
            pass
        else:
            if low <= number <= high:
                return number
    raise InvalidJobError(f"{what} must be an integer from {low} to {high}, got {shown(value)}")


def priority(value: object, what: str = "priority") -> int:
    return integer(value, what, PRIORITY_MIN, PRIORITY_MAX)


def retries(value: object) -> int:
    return integer(value, "retries", 0, MAX_RETRIES)


def identifier(value: object, what: str, error: type[InvalidJobError] = InvalidJobError) -> str:
    """A job id, task id or cron expression: a string of 1 to `MAX_ID_LENGTH` characters,
    storable everywhere (no NUL, no lone surrogate). Cheap for the usual ASCII id."""
    if type(value) is str and 0 < len(value) <= MAX_ID_LENGTH and value.isascii() and "\x00" not in value:
        return value
    if not isinstance(value, str) or not 0 < len(value) <= MAX_ID_LENGTH:
        raise error(f"{what} must be a string of 1 to {MAX_ID_LENGTH} characters, got {shown(value)}")
    if "\x00" in value:
        raise error(f"{what} must not contain NUL characters, got {shown(value)}")
    try:
        value.encode()
    except UnicodeEncodeError:
        raise error(f"{what} must be valid UTF-8 (it holds a lone surrogate), got {shown(value)}") from None
    return value


def arguments(args: Sequence[Any], kwargs: Mapping[str, Any] | None) -> tuple[list[Any], dict[str, Any]]:
    """A job's arguments as a new list and dict: `args` a sequence that is not text or bytes
    (which `list()` would split silently), `kwargs` a mapping or `None`."""
    usual = type(args) is list or type(args) is tuple  # skips two isinstance checks on ABCs
    if not usual and (not isinstance(args, Sequence) or isinstance(args, str | bytes | bytearray)):
        raise InvalidJobError(f"args must be a list or a tuple, got {shown(args)}")
    if kwargs is None:
        kwargs = {}
    elif type(kwargs) is not dict and not isinstance(kwargs, Mapping):
        raise InvalidJobError(f"kwargs must be a mapping or None, got {shown(kwargs)}")
    return list(args), dict(kwargs)


def unstorable(value: Any, path: str) -> str | None:
    """What in `value` JSON encodes but cannot be stored as given, and where (`args[0]['x']`),
    or `None`. orjson writes NaN and infinities as `null`, and PostgreSQL refuses NUL
    characters; the caller looks only when the encoded bytes hold `null` or `\\u0000`."""
    if isinstance(value, float):
        return None if math.isfinite(value) else f"NaN or infinity at {path}"
    if isinstance(value, str):
        return f"a NUL character at {path}" if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and "\x00" in key:
                return f"a NUL character at {path} (in a key)"
            found = unstorable(item, f"{path}[{shown(key)}]")
            if found:
                return found
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found = unstorable(item, f"{path}[{index}]")
            if found:
                return found
    elif is_dataclass(value) and not isinstance(value, type):
        for field in fields(value):
            found = unstorable(getattr(value, field.name), f"{path}.{field.name}")
            if found:
                return found
    return None
