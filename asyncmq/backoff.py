"""How long a failed job waits before its next attempt."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from asyncmq.errors import InvalidScheduleError
from asyncmq.limits import MAX_SECONDS, seconds

__all__ = ["Backoff"]


def _valid_delay(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and 0 <= value <= MAX_SECONDS
    )


@dataclass(frozen=True, slots=True)
class Backoff:
    """Fixed or exponential delay between attempts, with a cap and optional jitter.

    Jitter spreads retries of jobs that failed together (an outage) so they do not
    return together: with `jitter=0.5`, each delay is drawn from [50%, 100%] of its value.
    """

    kind: Literal["fixed", "exponential"] = "exponential"
    delay_s: float = 1.0
    max_s: float = 300.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if self.kind not in ("fixed", "exponential"):
            raise InvalidScheduleError(f"backoff kind must be 'fixed' or 'exponential', got {self.kind!r}")
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
    def coerce(cls, value: Backoff | float | timedelta | None) -> Backoff | None:
        """`None` means retry at once; a number or `timedelta` means a fixed delay."""
        if value is None or isinstance(value, Backoff):
            return value
        return cls.fixed(value)

    def delay_for(self, attempt: int) -> float:
        """The wait after failed attempt number `attempt` (1-based)."""
        if self.kind == "fixed":
            delay = self.delay_s
        else:
            delay = min(self.delay_s * 2 ** min(attempt - 1, 64), self.max_s)
        if self.jitter:
            delay *= 1 - self.jitter * random.random()
        return delay

    def to_spec(self) -> dict[str, Any]:
        return {"kind": self.kind, "delay_s": self.delay_s, "max_s": self.max_s, "jitter": self.jitter}

    @classmethod
    def from_spec(cls, spec: dict[str, Any] | None) -> Backoff | None:
        return None if spec is None else cls(**spec)
