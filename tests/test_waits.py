"""The waits a worker and its scheduler block in: a stop cancels them, and a wake-up that
arrives in the same instant must not swallow that cancellation (`asyncio.wait_for` on
Python 3.11 returns the woken result instead, so the task runs on: a worker that never
stops)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from asyncmq.backends import memory
from asyncmq.backends.base import EventWatch
from asyncmq.backends.mongo.waker import Waker
from asyncmq.backends.postgres.listener import Listener

#: (the wait, the wake-up that ends it), for each kind of wait.
Waits = tuple[Callable[[], Awaitable[None]], Callable[[], None]]


def _event_watch() -> Waits:
    watch = EventWatch()
    return (lambda: watch.wait(30)), watch.event.set


def _memory() -> Waits:
    backend = memory.InMemoryBackend()
    waiters = backend._store("q").schedule_waiters
    return (lambda: backend.wait_for_schedule("q", 30)), (lambda: memory._wake(waiters))


def _mongo() -> Waits:
    waker = Waker({}, change_streams=False, poll_max_s=30)
    waker.worked("d:q")
    return (lambda: waker.wait("d:q", 30)), (lambda: waker.wake("d:q"))


def _postgres() -> Waits:
    listener = Listener(None, None, "asyncmq")  # type: ignore[arg-type]  # never connects here
    listener._events["d:q"] = asyncio.Event()  # its first wait, which returns at once, is past
    return (lambda: listener.wait("d:q", 30)), (lambda: listener._notified(None, 0, "asyncmq", "d:q"))


@pytest.mark.parametrize("make", [_event_watch, _memory, _mongo, _postgres])
async def test_a_wait_cancelled_in_the_instant_it_is_woken_ends_cancelled(make: Callable[[], Waits]) -> None:
    wait, wake = make()
    waiting = asyncio.create_task(wait())
    for _ in range(3):
        await asyncio.sleep(0)  # it waits
    assert not waiting.done()
    wake()
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
