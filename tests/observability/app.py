"""Tasks for the metrics endpoint test; a worker process imports them with `--app`."""

from __future__ import annotations

import asyncio

from asyncmq.context import current_job
from asyncmq.tasks import task

__all__ = ["always_fails", "fails_once", "ok", "sleeps"]


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
