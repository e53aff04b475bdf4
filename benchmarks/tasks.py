"""Tasks the benchmarks run, importable by a worker process (`--app benchmarks.tasks`)."""

from __future__ import annotations

import asyncio

from asyncmq.tasks import task

__all__ = ["nap", "noop"]


@task(queue="bench", name="benchmarks.tasks.noop")
async def noop() -> None:
    """Does nothing: what is measured is the queue's own cost per job."""


@task(queue="bench", name="benchmarks.tasks.nap")
async def nap(pause_ms: float) -> None:
    """Sleeps `pause_ms`: a job that waits on I/O, as most do (the soak runs it)."""
    await asyncio.sleep(pause_ms / 1000)
