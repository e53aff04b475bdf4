"""What the conformance tests share besides fixtures: the event recorder, gates that hold a
task's attempt until the test opens them, expected counts, and the timeout for waits."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from asyncmq.core.event import Event, Payload
from asyncmq.core.seam import event_emitter
from asyncmq.job import JobState
from asyncmq.tasks import task
from asyncmq.worker import Worker

__all__ = [
    "GATES",
    "WAIT_S",
    "EventRecorder",
    "Gate",
    "StartWorker",
    "always_fail",
    "counts",
    "gate",
    "noop",
    "server_url",
]


@task
async def noop() -> None:
    return None


@task
async def always_fail() -> None:
    raise ValueError("boom")


def server_url(variable: str, default: str | None = None) -> str:
    """The test server named by `variable` (else `default`); missing, the test skips locally
    and fails in CI."""
    url = os.environ.get(variable, default)
    if url is None:
        message = f"{variable} is not set: scripts/test.sh starts this server"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return url


#: How long a test waits for something that should take milliseconds before it fails.
WAIT_S = 5.0

#: The `start_worker` fixture: `task = await start_worker(worker)`.
StartWorker = Callable[[Worker], Awaitable["asyncio.Task[None]"]]


class EventRecorder:
    """Every event emitted for one queue, in order, and a way to wait for the next ones."""

    def __init__(self, queue: str) -> None:
        self.queue = queue
        self.records: list[tuple[Event, Payload]] = []
        self._changed = asyncio.Event()
        self._listeners = {event: self._listener(event) for event in Event}

    def _listener(self, event: Event) -> Callable[[Payload], None]:
        def record(payload: Payload) -> None:
            if payload.get("queue") == self.queue:
                self.records.append((event, payload))
                self._changed.set()

        return record

    def subscribe(self) -> None:
        for event, listener in self._listeners.items():
            event_emitter.on(event, listener)

    def unsubscribe(self) -> None:
        for event, listener in self._listeners.items():
            event_emitter.off(event, listener)

    def of(self, name: Event | str, job_id: str | None = None) -> list[Payload]:
        """Payloads of event `name` so far, for one job if `job_id` is given."""
        return [
            payload
            for event, payload in self.records
            if event == name and (job_id is None or payload.get("id") == job_id)
        ]

    def names(self, job_id: str) -> list[str]:
        """The names of every event about one job, in order."""
        return [event.value for event, payload in self.records if payload.get("id") == job_id]

    async def wait(
        self, name: Event | str, *, count: int = 1, job_id: str | None = None, within_s: float = WAIT_S
    ) -> list[Payload]:
        """Wait until `count` events `name` (for `job_id`, if given) were seen; fail after `within_s`."""
        try:
            async with asyncio.timeout(within_s):
                while len(self.of(name, job_id)) < count:
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            seen = len(self.of(name, job_id))
            raise AssertionError(f"waited {within_s}s for {count} {name} events, saw {seen}") from None
        return self.of(name, job_id)


def counts(**nonzero: int) -> dict[str, int]:
    """The `queue.counts()` expected when only the given states hold jobs."""
    unknown = set(nonzero) - {state.value for state in JobState}
    assert not unknown, f"no such states: {unknown}"
    return {state.value: nonzero.get(state.value, 0) for state in JobState}


@dataclass
class Gate:
    """Holds a task's attempt until the test opens it, and tells whether it was interrupted."""

    opened: asyncio.Event = field(default_factory=asyncio.Event)
    interrupted: asyncio.Event = field(default_factory=asyncio.Event)

    async def hold(self) -> str:
        """What a gated task awaits: `"finished"` once opened; records a cancellation."""
        try:
            await self.opened.wait()
        except asyncio.CancelledError:
            self.interrupted.set()
            raise
        return "finished"


#: Gates by key (a test uses its queue name): tasks take the key as their argument.
GATES: dict[str, Gate] = {}


def gate(key: str) -> Gate:
    return GATES.setdefault(key, Gate())
