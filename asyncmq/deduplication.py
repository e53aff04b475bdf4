"""Deduplication and debounce: at most one job at a time per logical key of the producer's.

`Queue.add(..., deduplication={"id": "customer:42"})` stores the job only if no job holds
that key; otherwise nothing is stored and the caller gets the holder's id. The key is held:

- without `ttl`, while its job is not finished (not completed, failed, expired or cancelled)
  and still stored: a finished, removed or drained job lets it go;
- with `ttl`, for `ttl` seconds from when the job took it, whatever becomes of the job (a
  throttle); `extend: True` restarts those seconds at each duplicate.

`replace: True` (debounce) lets a new job take the place of a holder that is still delayed:
the delayed job is removed and the new one holds the key (keeping the key's expiry unless
`extend`). A holder that is already waiting, running or finished is not replaced; the new
job is a duplicate. `debounce={...}` is the same mapping under AsyncMQ's older name.

Each backend makes the decision and the store in one atomic step, so producers racing with
the same key store exactly one job; the same step counts a duplicate and a replacement in the
queue totals `deduplicated` and `debounced` (`asyncmq.transitions`), whichever process added.
The key's record lives beside the queue's jobs (a key per dedup id), not in the job, so jobs
without deduplication pay nothing for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import TypedDict

from asyncmq.errors import InvalidJobError
from asyncmq.limits import identifier, seconds, shown

__all__ = ["Deduplicated", "Deduplication", "DeduplicationOptions"]


class DeduplicationOptions(TypedDict, total=False):
    """The mapping `deduplication=` (or `debounce=`) takes, in AsyncMQ's shape."""

    #: The logical key, 1 to 256 characters; scoped to the queue.
    id: str
    #: Seconds the key stays held from when its job took it (a number or a `timedelta`);
    #: without it, until the job finishes.
    ttl: float | timedelta
    #: A duplicate restarts the key's `ttl` (without a `ttl`, nothing to restart).
    extend: bool
    #: A new job replaces a holder that is still delayed (debounce).
    replace: bool


_KEYS = frozenset(DeduplicationOptions.__optional_keys__)


@dataclass(frozen=True, slots=True)
class Deduplication:
    """A checked `deduplication=` mapping: what a backend needs to decide."""

    id: str
    ttl_s: float | None = None
    extend: bool = False
    replace: bool = False

    @classmethod
    def from_options(cls, deduplication: object, debounce: object) -> Deduplication | None:
        """The options given to an enqueue under either name, checked; `None` when neither was."""
        if deduplication is not None and debounce is not None:
            raise InvalidJobError(
                "deduplication= and debounce= are the same option under two names: give one of them"
            )
        given, name = (
            (deduplication, "deduplication") if deduplication is not None else (debounce, "debounce")
        )
        if given is None:
            return None
        if not isinstance(given, Mapping):
            raise InvalidJobError(
                f'{name}= takes a mapping such as {{"id": "customer:42", "ttl": 10}}, got {shown(given)}'
            )
        unknown = sorted(str(key) for key in given if key not in _KEYS)
        if unknown:
            raise InvalidJobError(f"{name}= got unknown keys {unknown}; its keys are {sorted(_KEYS)}")
        if "id" not in given:
            raise InvalidJobError(f'{name}= needs an "id": the key that duplicates share')
        flags = {}
        for flag in ("extend", "replace"):
            value = given.get(flag, False)
            if type(value) is not bool:
                raise InvalidJobError(f"{name}[{flag!r}] must be True or False, got {shown(value)}")
            flags[flag] = value
        ttl_s = seconds(given.get("ttl"), f"{name}['ttl']", allow_zero=False)
        return cls(identifier(given["id"], f"{name}['id']"), ttl_s, flags["extend"], flags["replace"])

    def expires_at(self, now: float) -> float | None:
        """When a key taken (or extended) at `now` is let go by time; `None`: when its job ends."""
        return None if self.ttl_s is None else now + self.ttl_s

    def expires_in_place_of(self, replaced_expires_at: float | None, now: float) -> float | None:
        """The key's expiry when the job replaces its delayed holder, whose key expired at
        `replaced_expires_at`: kept, unless `extend` restarts it (or the key had none)."""
        if replaced_expires_at is not None and not self.extend:
            return replaced_expires_at
        return self.expires_at(now)


@dataclass(frozen=True, slots=True)
class Deduplicated:
    """A backend's answer to `enqueue_deduplicated`.

    `stored`: the job given was stored, and holds the key. Otherwise `holder` is the id of the
    job holding the key, which the caller gets instead, or `None` when the job's own id exists
    in the queue already (nothing stored, the key untouched: as for any job whose id exists).
    `replaced`: the delayed job the stored one replaced (debounce)."""

    stored: bool
    holder: str | None
    replaced: str | None = None
