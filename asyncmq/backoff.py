"""How long a failed job waits before its next attempt.

A job record holds data only, so a backoff function is kept by its import path
(`module:qualname`) and imported by the worker when the job fails: one that no worker could
import that way (a lambda, a nested function) is refused where it is given.
"""

from __future__ import annotations

import importlib
import inspect
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from asyncmq.errors import InvalidJobError, InvalidScheduleError
from asyncmq.limits import MAX_SECONDS, seconds
from asyncmq.logging import get_logger

__all__ = ["Backoff", "BackoffFunction"]

log = get_logger(__name__)

#: `(attempt) -> seconds`: the wait after failed attempt number `attempt` (1-based).
BackoffFunction = Callable[[int], float]

_KINDS = ("fixed", "exponential", "power", "function")

#: Paths of backoff functions whose failure was logged already: once per path and process.
_LOGGED: set[str] = set()


def _valid_delay(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and 0 <= value <= MAX_SECONDS
    )


@dataclass(frozen=True, slots=True)
class Backoff:
    """The delay between attempts: fixed, exponential (doubling from `delay_s`), a power of
    `delay_s` (the n-th retry waits `delay_s ** n`), or a function's; with a cap and
    optional jitter.

    Jitter spreads retries of jobs that failed together (an outage) so they do not
    return together: with `jitter=0.5`, each delay is drawn from [50%, 100%] of its value.
    """

    kind: Literal["fixed", "exponential", "power", "function"] = "exponential"
    delay_s: float = 1.0
    max_s: float = 300.0
    jitter: float = 0.5
    #: The function's import path, `module:qualname` (kind "function" only).
    path: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise InvalidScheduleError(f"backoff kind must be one of {', '.join(_KINDS)}, got {self.kind!r}")
        if (self.kind == "function") != isinstance(self.path, str):
            raise InvalidScheduleError(f"invalid backoff {self!r}: a path for kind 'function' only")
        jitter_ok = isinstance(self.jitter, int | float) and 0 <= self.jitter <= 1
        if not (_valid_delay(self.delay_s) and _valid_delay(self.max_s) and jitter_ok):
            raise InvalidScheduleError(
                f"invalid backoff {self!r}: delays finite and >= 0 (at most {MAX_SECONDS} s), "
                "0 <= jitter <= 1"
            )

    @classmethod
    def fixed(cls, delay: float | timedelta, jitter: float = 0.0) -> Backoff:
        delay_s = seconds(delay, "backoff delay") or 0.0
        return cls("fixed", delay_s, delay_s, jitter)

    @classmethod
    def exponential(
        cls, base: float | timedelta = 1.0, max_delay: float | timedelta = 300.0, jitter: float = 0.5
    ) -> Backoff:
        return cls(
            "exponential",
            seconds(base, "backoff base") or 0.0,
            seconds(max_delay, "backoff cap") or 0.0,
            jitter,
        )

    @classmethod
    def power(cls, base: float, max_delay: float | timedelta = MAX_SECONDS, jitter: float = 0.0) -> Backoff:
        """The n-th retry waits `base ** n` seconds (n from 1: 2, 4, 8 s for base 2), at most
        `max_delay`: what a plain number means as `backoff=`."""
        if isinstance(base, timedelta):
            raise InvalidScheduleError(
                "a backoff base is a number, not a timedelta (Backoff.fixed takes one)"
            )
        return cls(
            "power", seconds(base, "backoff base") or 0.0, seconds(max_delay, "backoff cap") or 0.0, jitter
        )

    @classmethod
    def function(cls, fn: BackoffFunction, max_delay: float | timedelta = MAX_SECONDS) -> Backoff:
        """The wait `fn(attempt)` gives after failed attempt number `attempt` (1-based), at most
        `max_delay`. `fn` must be importable by its module and name, as workers import it."""
        return cls("function", 0.0, seconds(max_delay, "backoff cap") or 0.0, 0.0, _import_path(fn))

    @classmethod
    def coerce(cls, value: Backoff | BackoffFunction | float | timedelta | None) -> Backoff | None:
        """`None` means retry at once; a number is an exponential base (`power`); a
        `timedelta` a fixed delay; a function `(attempt) -> seconds` gives each delay."""
        if value is None or isinstance(value, Backoff):
            return value
        if isinstance(value, timedelta):
            return cls.fixed(value)
        if callable(value):
            return cls.function(value)
        return cls.power(value)

    def delay_for(self, attempt: int) -> float:
        """The wait after failed attempt number `attempt` (1-based). Never raises: a backoff
        function that fails gives the default backoff's delay (logged once), so the job is
        retried rather than lost."""
        if self.kind == "fixed":
            delay = self.delay_s
        elif self.kind == "exponential":
            delay = min(self.delay_s * 2 ** min(attempt - 1, 64), self.max_s)
        elif self.kind == "power":
            delay = _capped_power(self.delay_s, attempt, self.max_s)
        else:
            delay = self._called(attempt)
        if self.jitter:
            delay *= 1 - self.jitter * random.random()
        return delay

    def _called(self, attempt: int) -> float:
        assert self.path is not None
        try:
            delay = _resolve(self.path)(attempt)
            if not _valid_number(delay) or delay < 0:
                raise InvalidScheduleError(f"returned {delay!r}, not a number of seconds >= 0")
            return float(min(delay, self.max_s))
        except Exception as exc:
            fallback = Backoff.exponential()
            if self.path not in _LOGGED:
                _LOGGED.add(self.path)
                log.error(
                    "backoff function %s failed (%s: %s); its retries wait as the default backoff "
                    "does instead (exponential from 1 s, capped at 300 s); logged once per process",
                    self.path,
                    type(exc).__name__,
                    exc,
                )
            return fallback.delay_for(attempt)

    def to_spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = {"kind": self.kind, "delay_s": self.delay_s, "max_s": self.max_s}
        spec["jitter"] = self.jitter
        if self.path is not None:
            spec["path"] = self.path
        return spec

    @classmethod
    def from_spec(cls, spec: dict[str, Any] | None) -> Backoff | None:
        return None if spec is None else cls(**spec)


def _valid_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _capped_power(base: float, exponent: int, cap: float) -> float:
    try:
        return min(base**exponent, cap)
    except OverflowError:
        return cap


def _resolve(path: str) -> Callable[[int], Any]:
    module, _, qualname = path.partition(":")
    target: Any = importlib.import_module(module)
    for part in qualname.split("."):
        target = getattr(target, part)
    return target  # type: ignore[no-any-return]


def _import_path(fn: Callable[..., Any]) -> str:
    """`fn`'s `module:qualname`, checked now: the worker imports it by that path when a job
    fails, and one it cannot import would only show there, after the failure."""
    module, qualname = getattr(fn, "__module__", None), getattr(fn, "__qualname__", None)
    refused = f"backoff {fn!r} cannot be stored: a job keeps its backoff function by import path"
    if not (isinstance(module, str) and isinstance(qualname, str)) or "<" in qualname:
        raise InvalidJobError(
            f"{refused}, and a lambda or a nested function has none; define it at module level"
        )
    path = f"{module}:{qualname}"
    try:
        found = _resolve(path)
    except (ImportError, AttributeError) as exc:
        raise InvalidJobError(
            f"{refused}, and {path} cannot be imported ({exc}); define it at module level"
        ) from None
    if found is not fn:
        raise InvalidJobError(
            f"{refused}, and {path} is another object; define it at module level under its name"
        )
    try:
        inspect.signature(fn).bind(1)
    except TypeError:
        raise InvalidJobError(
            f"backoff {path} must take the attempt number: def {qualname}(attempt: int) -> float"
        ) from None
    except ValueError:
        pass  # no signature to read (a builtin): it is called as given
    return path
