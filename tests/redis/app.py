"""Tasks of the Redis resilience tests. A worker started in a child process imports this
module (`--app tests.redis.app`) and the tests import it too, so both sides register the
same task ids. Importing it has no other effect."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from asyncmq.context import current_job
from asyncmq.job import Job
from asyncmq.tasks import task

__all__ = ["HOLDS", "Hold", "first_attempt_holds", "hold", "nap"]


@task(queue="resilience", name="resilience.nap")
async def nap(number: int, pause_s: float) -> int:
    """Sleeps a little, then returns twice its number: long enough to be caught mid-run."""
    await asyncio.sleep(pause_s)
    return number * 2


@dataclass
class Hold:
    """Keeps a job's first attempt running until the test releases it."""

    started: asyncio.Event = field(default_factory=asyncio.Event)
    released: asyncio.Event = field(default_factory=asyncio.Event)
    #: The worker's own copy of the job in its first attempt (its token is that attempt's).
    first_attempt: Job | None = None


#: Holds by key (a test uses its queue name); `first_attempt_holds` takes the key.
HOLDS: dict[str, Hold] = {}


def hold(key: str) -> Hold:
    return HOLDS.setdefault(key, Hold())


@task(queue="resilience", name="resilience.first_attempt_holds")
async def first_attempt_holds(key: str) -> str:
    """The first attempt waits until released; any later attempt returns at once. Each
    returns which attempt it was, so the stored result names the attempt that won."""
    job = current_job().job
    if job.attempt == 1:
        state = hold(key)
        state.first_attempt = job
        state.started.set()
        await state.released.wait()
    return f"finished by attempt {job.attempt}"
