"""Tasks the benchmarks run, importable by a worker process (`--app benchmarks.tasks`)."""

from __future__ import annotations

from asyncmq.tasks import task

__all__ = ["noop"]


@task(queue="bench", name="benchmarks.tasks.noop")
async def noop() -> None:
    """Does nothing: what is measured is the queue's own cost per job."""
