"""An `--app` module for a worker in a child process whose jobs never end by themselves, each
saying on stderr when it starts, so a test can stop or cancel them mid-run. With
ASYNCMQ_TEST_HANG_JOBS=N, importing it also configures an in-memory backend holding N such
jobs (h1...hN) on queue `hang`. Only child processes import it."""

from __future__ import annotations

import asyncio
import os
import sys

from asyncmq.backends.memory import InMemoryBackend
from asyncmq.conf import configure, load_settings
from asyncmq.context import current_job
from asyncmq.queues import Queue
from asyncmq.tasks import task

__all__ = ["block"]


@task(queue="hang", name="clitest.block")
async def block() -> None:
    print(f"block job {current_job().job.id} started", file=sys.stderr, flush=True)
    await asyncio.sleep(60)


async def _populate(backend: InMemoryBackend, count: int) -> None:
    for n in range(1, count + 1):
        await Queue("hang", backend=backend).add(block.name, job_id=f"h{n}")


def _configure() -> None:
    count = int(os.environ.get("ASYNCMQ_TEST_HANG_JOBS", "0"))
    if count:
        backend = InMemoryBackend()
        loaded = load_settings()  # the other ASYNCMQ_* variables still apply
        loaded.backend = backend
        configure(loaded)
        asyncio.run(_populate(backend, count))


_configure()
