"""Shared fixtures: every test starts from default settings and leaves no listener behind."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Iterator

import pytest

from asyncmq.conf import configure
from asyncmq.core.event import Event, Payload
from asyncmq.core.seam import event_emitter, seam
from asyncmq.worker import Worker
from tests.conformance.support import EventRecorder, StartWorker

#: How long a worker may take to start, or to stop after the test.
WORKER_WAIT_S = 10.0


@pytest.fixture(autouse=True)
def _fresh_settings_and_listeners(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("ASYNCMQ_SETTINGS_MODULE", "ASYNCMQ_BACKEND", "ASYNCMQ_SCAN_INTERVAL"):
        monkeypatch.delenv(name, raising=False)
    configure(None)
    yield
    if "asyncmq.observability" in sys.modules and sys.modules["asyncmq.observability"] is not None:
        sys.modules["asyncmq.observability"].uninstrument()
    seam.reset()
    configure(None)


@pytest.fixture
async def events(queue_name: str) -> AsyncIterator[EventRecorder]:
    """Records this process's events for the test's queue; unsubscribes after the test."""
    recorder = EventRecorder(queue_name)
    recorder.subscribe()
    try:
        yield recorder
    finally:
        recorder.unsubscribe()


@pytest.fixture
async def start_worker() -> AsyncIterator[StartWorker]:
    """`task = await start_worker(worker)`: run a worker in the background, returning once it
    has started (so a `stop()` cannot be missed). Every worker still running is stopped
    (running jobs handed back) and awaited after the test; a worker that crashed fails it."""
    started: list[tuple[Worker, asyncio.Task[None]]] = []

    async def start(worker: Worker) -> asyncio.Task[None]:
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def on_started(payload: Payload) -> None:
            if payload["worker_id"] == worker.id and not ready.done():
                ready.set_result(None)

        event_emitter.on(Event.WORKER_STARTED, on_started)
        try:
            task = asyncio.create_task(worker.run(), name=f"test-worker-{worker.id}")
            started.append((worker, task))
            await asyncio.wait({task, ready}, timeout=WORKER_WAIT_S, return_when=asyncio.FIRST_COMPLETED)
        finally:
            event_emitter.off(Event.WORKER_STARTED, on_started)
            ready.cancel()
        if task.done():
            task.result()  # run() failed: raise its error here
        return task

    yield start
    for worker, _ in started:
        worker.stop(grace=False)
    tasks = [task for _, task in started]
    done, pending = await asyncio.wait(tasks, timeout=WORKER_WAIT_S) if tasks else (set(), set())
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    assert not pending, "a worker did not stop within its deadline"
    for task in done:
        task.result()  # a worker crashed: the engine broke its promise to keep going
