"""The task of the MongoDB process tests. Worker processes import it (`--app tests.mongo.app`)
and so do the tests; importing it has no other effect."""

from __future__ import annotations

import asyncio
import os

from asyncmq.tasks import task

__all__ = ["logged_nap"]


@task(queue="mongo", name="mongo.logged_nap")
async def logged_nap(number: int, pause_s: float) -> int:
    """Appends its number and the process id to the file `ASYNCMQ_TEST_RUNS` names (one short
    O_APPEND write per run: lines never interleave), then sleeps: every run of every process
    is on record."""
    fd = os.open(os.environ["ASYNCMQ_TEST_RUNS"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{number} {os.getpid()}\n".encode())
    finally:
        os.close(fd)
    await asyncio.sleep(pause_s)
    return number
