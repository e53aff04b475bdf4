"""An `--app` module for a worker started in a child process: importing it configures an
in-memory backend holding one job that runs for a second, so the child has work in hand
when the test sends SIGTERM. Only that child imports it."""

from __future__ import annotations

import asyncio
import sys

from asyncmq.backends.memory import InMemoryBackend
from asyncmq.conf import Settings, configure
from asyncmq.queues import Queue
from asyncmq.tasks import task

__all__ = ["slow"]


@task(queue="slow", name="clitest.slow")
async def slow() -> str:
    print("slow job started", file=sys.stderr, flush=True)
    await asyncio.sleep(1.0)
    return "finished"


def _populate() -> None:
    backend = InMemoryBackend()
    configure(Settings(backend=backend))
    asyncio.run(Queue("slow", backend=backend).add(slow.name, job_id="slow-1"))


_populate()
