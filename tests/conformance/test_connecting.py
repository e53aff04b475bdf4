"""One connection rule on every backend: a backend connects itself on first use, whichever
call comes first, so `queue.add_repeatable` on a backend just built from a URL works like
`queue.add` does, and so does every other call, with or without `connect()`, and again
after `close()`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from asyncmq.backends.base import BaseBackend
from asyncmq.job import JobState
from asyncmq.queues import Queue

#: A first call each, by what it does: schedules, control, inspection, workers' reads.
FIRST_CALLS: dict[str, Callable[[Queue], Awaitable[Any]]] = {
    "add_repeatable": lambda q: q.add_repeatable("tests.cleanup", every=60),
    "remove_repeatable": lambda q: q.remove_repeatable("no-such-key"),
    "repeatables": lambda q: q.repeatables(),
    "pause": lambda q: q.pause(),
    "resume": lambda q: q.resume(),
    "drain": lambda q: q.drain(),
    "cancel": lambda q: q.cancel("no-such-job"),
    "remove_job": lambda q: q.remove_job("no-such-job"),
    "list_jobs": lambda q: q.list_jobs(JobState.WAITING),
    "stats": lambda q: q.stats(),
    "queues": lambda q: q.backend.queues(),
    "get_job": lambda q: q.backend.get_job(q.name, "no-such-job"),
    "delete_queue": lambda q: q.backend.delete_queue(q.name),
    "add": lambda q: q.add("tests.send", args=[1]),
}


@pytest.mark.parametrize("call", list(FIRST_CALLS))
async def test_any_first_call_after_close_connects_by_itself(
    backend: BaseBackend, queue_name: str, call: str
) -> None:
    # Closed, a backend built from a URL is as one just built: nothing made, nothing open.
    await backend.close()
    queue = Queue(queue_name, backend=backend)
    await FIRST_CALLS[call](queue)
    await queue.add("tests.send", args=[2])  # and it goes on working
    assert (await queue.counts())["waiting"] >= 1
