"""The jobs `asyncmq bench` runs, registered as tasks so worker processes can import them
(`--app asyncmq.bench.workloads`).

Each workload isolates one cost: `noop` the queue's own, `io` a task that waits, `cpu` a task
that holds the event loop, `small` and `large` the price of arguments (encoding, storage,
transfer).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from asyncmq.tasks import task

__all__ = ["QUEUE", "WORKLOADS", "Workload", "cpu", "io", "large", "noop", "small"]

#: The queue the tasks default to; the benchmark always passes a unique one.
QUEUE = "bench"
_IO_WAIT_S = 0.010
_CPU_S = 0.001


@task(queue=QUEUE, name="asyncmq.bench.noop")
async def noop() -> None:
    """Does nothing: what is measured is the queue's own cost per job."""


@task(queue=QUEUE, name="asyncmq.bench.io")
async def io() -> None:
    """Waits 10 ms without holding the loop, like a call to another service."""
    await asyncio.sleep(_IO_WAIT_S)


@task(queue=QUEUE, name="asyncmq.bench.cpu")
async def cpu() -> None:
    """Holds the event loop for about 1 ms of pure-Python work, so concurrency cannot help."""
    deadline = time.perf_counter() + _CPU_S
    while time.perf_counter() < deadline:
        pass


@task(queue=QUEUE, name="asyncmq.bench.small")
async def small(payload: str) -> None:
    """Ignores its ~100-byte argument: the cost measured is carrying it."""


@task(queue=QUEUE, name="asyncmq.bench.large")
async def large(payload: str) -> None:
    """Ignores its ~64 KB argument: the cost measured is carrying it."""


@dataclass(frozen=True, slots=True)
class Workload:
    """One kind of job: the task it runs and the arguments every job carries."""

    name: str
    task_id: str
    args: tuple[Any, ...]
    description: str

    def spec(self) -> dict[str, Any]:
        """One `Queue.add_bulk` entry for this workload."""
        return {"task_id": self.task_id, "args": self.args}


WORKLOADS: dict[str, Workload] = {
    workload.name: workload
    for workload in (
        Workload("noop", noop.name, (), "does nothing"),
        Workload("io", io.name, (), "awaits asyncio.sleep(10 ms)"),
        Workload("cpu", cpu.name, (), "~1 ms of pure-Python work"),
        Workload("small", small.name, ("x" * 100,), "no-op with a ~100-byte argument"),
        Workload("large", large.name, ("x" * 65_536,), "no-op with a ~64 KB argument"),
    )
}
