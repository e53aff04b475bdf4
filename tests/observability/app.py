"""Tasks for the metrics endpoint test; a worker process imports them with `--app`."""

from __future__ import annotations

import asyncio

from asyncmq.context import current_job
from asyncmq.tasks import task

__all__ = ["always_fails", "fails_once", "fails_with", "ok", "sleeps"]


@task(queue="observed", name="observed.ok")
async def ok() -> str:
    await asyncio.sleep(0.01)
    return "ok"


@task(queue="observed", name="observed.fails_once")
async def fails_once() -> str:
    if current_job().job.attempt == 1:
        raise ConnectionError("first attempt fails")
    return "second attempt"


@task(queue="observed", name="observed.always_fails")
async def always_fails() -> None:
    raise ValueError("always")


@task(queue="observed", name="observed.sleeps")
async def sleeps(seconds: float) -> None:
    await asyncio.sleep(seconds)


@task(queue="observed", name="observed.fails_with")
async def fails_with(error_type: str | None = None) -> None:
    """Succeeds, or raises an exception of a class named `error_type`: an error no worker has
    seen before, as a deploy brings."""
    if error_type is not None:
        raise type(error_type, (Exception,), {})("a new error")
