"""Backoff forms: a number as an exponential base, a function kept by its import path."""

from __future__ import annotations

import logging
import math
from datetime import timedelta
from typing import Any

import pytest

import asyncmq
from asyncmq import Backoff
from asyncmq.errors import InvalidJobError, InvalidScheduleError
from asyncmq.limits import MAX_SECONDS


def bounded_backoff(attempt: int) -> float:
    return min(60.0, 2.0**attempt)


def broken_backoff(attempt: int) -> float:
    raise RuntimeError("no delay today")


def negative_backoff(attempt: int) -> float:
    return -1.0


def text_backoff(attempt: int) -> Any:
    return "soon"


def no_attempt() -> float:
    return 1.0


class Policies:
    @staticmethod
    def linear(attempt: int) -> float:
        return 3.0 * attempt


def test_a_number_is_an_exponential_base_the_nth_retry_waiting_base_to_the_n() -> None:
    backoff = Backoff.coerce(2)
    assert backoff == Backoff.power(2)
    assert [backoff.delay_for(n) for n in (1, 2, 3)] == [2.0, 4.0, 8.0]
    assert [Backoff.coerce(1.5).delay_for(n) for n in (1, 2, 3)] == [1.5, 2.25, 3.375]  # type: ignore[union-attr]
    assert Backoff.coerce(0).delay_for(3) == 0.0  # type: ignore[union-attr]


def test_a_power_backoff_keeps_to_its_cap_and_never_overflows() -> None:
    assert Backoff.power(10, max_delay=250).delay_for(3) == 250.0
    assert Backoff.power(10).delay_for(10_000) == MAX_SECONDS


def test_a_power_backoff_with_jitter_stays_within_its_share() -> None:
    delays = [Backoff.power(2, jitter=0.5).delay_for(3) for _ in range(200)]
    assert all(4.0 <= delay <= 8.0 for delay in delays)


def test_a_timedelta_is_still_a_fixed_delay_and_fixed_and_exponential_are_unchanged() -> None:
    assert Backoff.coerce(timedelta(seconds=7)) == Backoff.fixed(7)
    assert Backoff.fixed(2).delay_for(5) == 2.0
    assert Backoff.exponential(1, jitter=0).delay_for(3) == 4.0


@pytest.mark.parametrize("base", [-2, math.nan, math.inf, "2", True])
def test_a_base_that_is_not_a_finite_number_is_refused(base: object) -> None:
    with pytest.raises(InvalidScheduleError, match="backoff base"):
        Backoff.coerce(base)  # type: ignore[arg-type]
    with pytest.raises(InvalidScheduleError, match="not a timedelta"):
        Backoff.power(timedelta(seconds=2))  # type: ignore[arg-type]


def test_a_function_is_kept_by_its_import_path_and_gives_each_delay() -> None:
    backoff = Backoff.coerce(bounded_backoff)
    assert backoff is not None
    assert backoff.to_spec()["path"] == f"{__name__}:bounded_backoff"
    restored = Backoff.from_spec(backoff.to_spec())
    assert restored is not None
    assert [restored.delay_for(n) for n in (1, 2, 6, 7)] == [2.0, 4.0, 60.0, 60.0]
    assert Backoff.function(Policies.linear).delay_for(2) == 6.0


@pytest.mark.parametrize(
    ("fn", "message"),
    [
        (lambda attempt: 1.0, "a lambda or a nested function has none; define it at module level"),
        (no_attempt, "must take the attempt number"),
    ],
)
def test_a_function_no_worker_could_import_or_call_is_refused(fn: Any, message: str) -> None:
    with pytest.raises(InvalidJobError, match=message):
        Backoff.coerce(fn)


def test_a_nested_function_is_refused_at_task_declaration() -> None:
    def nested(attempt: int) -> float:
        return 1.0

    with pytest.raises(InvalidJobError, match="define it at module level"):

        @asyncmq.task(retries=2, backoff=nested)
        async def charge() -> None: ...


def test_a_function_that_its_path_does_not_lead_back_to_is_refused() -> None:
    impostor = type(no_attempt)(bounded_backoff.__code__, {}, "bounded_backoff")
    impostor.__module__, impostor.__qualname__ = __name__, "bounded_backoff"  # a copy, not the module's
    with pytest.raises(InvalidJobError, match="is another object"):
        Backoff.coerce(impostor)


@pytest.mark.parametrize("fn", [broken_backoff, negative_backoff, text_backoff])
def test_a_function_that_fails_gives_the_default_delay_and_is_logged_once(
    fn: Any, caplog: pytest.LogCaptureFixture
) -> None:
    backoff = Backoff.function(fn)
    with caplog.at_level(logging.ERROR, logger="asyncmq"):
        delays = [backoff.delay_for(n) for n in (1, 2, 3)]
    assert all(0 < delay <= 2 ** (n - 1) for n, delay in zip((1, 2, 3), delays, strict=True))
    assert [r.getMessage().split(" failed")[0] for r in caplog.records] == [
        f"backoff function {__name__}:{fn.__name__}"
    ]


def test_a_function_whose_module_is_gone_on_the_worker_gives_the_default_delay() -> None:
    backoff = Backoff("function", 0.0, 300.0, 0.0, "no_such_module_here:delay")
    assert 0 < backoff.delay_for(1) <= 1.0
