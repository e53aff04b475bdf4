"""The task of the fault-injection suite. Worker processes import it (`--app tests.faults.app`)
and so does the suite; importing it has no other effect."""

from __future__ import annotations

import asyncio
import os

from asyncmq.context import current_job
from asyncmq.tasks import task

__all__ = ["RECORD_VARIABLE", "record"]

#: The environment variable naming the file every execution is written to.
RECORD_VARIABLE = "ASYNCMQ_FAULTS_RECORD"


@task(queue="faults", name="faults.record")
async def record(number: int) -> list[int]:
    """Writes `number attempt pid` to the record (one short O_APPEND write: lines of several
    processes never interleave) before it does anything else, so every execution is on record
    even if its process dies right after; then works a few milliseconds. Returns the same
    three numbers, so the stored result names the attempt whose outcome was kept."""
    attempt, pid = current_job().job.attempt, os.getpid()
    fd = os.open(os.environ[RECORD_VARIABLE], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{number} {attempt} {pid}\n".encode())
    finally:
        os.close(fd)
    await asyncio.sleep(0.003)
    return [number, attempt, pid]
