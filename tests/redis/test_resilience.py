"""At-least-once on a real Redis: an idle worker's blocking wait killed, a stale worker
reporting late, the server restarting with delayed jobs pending. Workers killed, frozen or cut
off mid-run on every backend are in the fault-injection suite (tests/faults).

Each test drives real workers (in a child process or in this one) and waits on events or
polls the store with a deadline; none sleeps a fixed time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

import pytest

from asyncmq.backends.redis import RedisBackend
from asyncmq.core.event import Event
from asyncmq.job import JobState
from asyncmq.queues import Queue
from tests.conformance.support import EventRecorder, StartWorker, counts
from tests.private_servers import RedisServer
from tests.redis.app import first_attempt_holds, hold, nap
from tests.redis.support import (
    POLL_S,
    WAIT_S,
    MakeBackend,
    kill_connections,
    wait_for_counts,
)

#: Short leases, so jobs of a dead worker come back within about a second.
LEASE_S = 1.0


def _named(url: str, name: str) -> str:
    """`url` whose connections announce themselves as `name` (`CLIENT SETNAME`)."""
    return f"{url}{'&' if '?' in url else '?'}client_name={name}"


async def _eventually(check: Callable[[], Awaitable[bool]], what: str, within_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + within_s
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {within_s}s for {what}")
        await asyncio.sleep(POLL_S)


# -- connections killed under a worker ---------------------------------------------
async def test_an_idle_worker_whose_blocking_pop_is_killed_still_picks_up_the_next_job(
    backend: RedisBackend,
    make_backend: MakeBackend,
    redis_url: str,
    queue_name: str,
    events: EventRecorder,
    start_worker: StartWorker,
) -> None:
    name = f"asyncmq-{queue_name}"
    worker_backend = await make_backend(_named(redis_url, name))
    queue = Queue(queue_name, backend=worker_backend)
    running = await start_worker(queue.worker(concurrency=1, handle_signals=False))

    async def both_blocked() -> bool:
        clients = await backend.client.client_list(_type="normal")
        return sum(1 for client in clients if client["name"] == name and "b" in client["flags"]) >= 2

    # Idle, the worker waits in BLPOP for a wake-up, and its scheduler for a sooner job.
    await _eventually(both_blocked, "the idle worker to block in BLPOP")
    assert await kill_connections(backend.client, name, blocked=True) >= 1

    job_id = await Queue(queue_name, backend=backend).add(nap.name, [21, 0])
    await events.wait(Event.JOB_COMPLETED, job_id=job_id)
    assert (await queue.get_job(job_id)).result == 42
    assert not running.done(), "the worker stopped"


# -- a stale worker reporting after its job was given to another ----------------------
async def test_a_stale_workers_late_outcome_is_refused_and_the_new_owners_result_is_kept(
    backend: RedisBackend,
    queue_name: str,
    events: EventRecorder,
    start_worker: StartWorker,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Worker A takes the job one step at a time, with no heartbeat: once its attempt runs
    # past the lease, it is a worker that stalled. Worker B runs normally, and looks for
    # stalled jobs every half lease.
    queue = Queue(queue_name, backend=backend, lease=LEASE_S)
    job_id = await queue.add(first_attempt_holds.name, [queue_name])
    state = hold(queue_name)
    stale = queue.worker(handle_signals=False)
    stale_step = asyncio.create_task(stale.process())
    try:
        await asyncio.wait_for(state.started.wait(), WAIT_S)
        await start_worker(queue.worker(concurrency=1, handle_signals=False))
        # B's scheduler recovers the job once A's lease ran out; B runs it to completion.
        await events.wait(Event.JOB_COMPLETED, job_id=job_id)
        with caplog.at_level(logging.WARNING, logger="asyncmq.worker"):
            state.released.set()  # A finishes late and tries to store its outcome
            assert await asyncio.wait_for(stale_step, WAIT_S) is True
    finally:
        state.released.set()
        await asyncio.wait_for(asyncio.gather(stale_step, return_exceptions=True), WAIT_S)

    assert f"discarded the outcome of job {job_id}: another owner has it now" in caplog.messages
    assert events.names(job_id) == [
        "job:enqueued",
        "job:started",  # A
        "job:stalled",
        "job:started",  # B
        "job:completed",  # B
        "job:abandoned",  # A's outcome refused: A's attempt ended here without one
    ]
    stored = await queue.get_job(job_id)
    assert stored.status is JobState.COMPLETED
    assert stored.result == "finished by attempt 2"
    assert (stored.attempt, stored.stalls) == (2, 1)

    # A's own copy, with its attempt's token, is refused again when offered directly.
    late = state.first_attempt
    assert late is not None
    assert (late.status, late.result) == (JobState.COMPLETED, "finished by attempt 1")
    assert await backend.finish([late], queue.retention) == [False]
    again = await queue.get_job(job_id)
    assert (again.status, again.result, again.token) == (JobState.COMPLETED, stored.result, stored.token)


# -- the server restarting --------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.timeout(90)
async def test_a_worker_survives_a_redis_restart_and_loses_no_job_the_server_persisted(
    redis_server: RedisServer,
    make_backend: MakeBackend,
    queue_name: str,
    events: EventRecorder,
    start_worker: StartWorker,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # One retry only, so the worker itself (not the client's retries) rides out the outage.
    worker_backend = await make_backend(redis_server.url, retries=1)
    producer = Queue(queue_name, backend=await make_backend(redis_server.url, retries=1))
    queue = Queue(queue_name, backend=worker_backend, lease=10.0, scan_interval=0.1)
    before = await producer.add_bulk([{"task_id": nap.name, "args": [n, 0.02]} for n in range(100)])
    running = await start_worker(queue.worker(concurrency=2, handle_signals=False))
    await wait_for_counts(producer, lambda c: c["completed"] >= 10, "some jobs completed")
    at_shutdown = await producer.counts()
    assert at_shutdown["waiting"] > 0, "every job was claimed: the restart would test nothing"

    async def outage_noticed() -> bool:
        return any("failed" in message for message in caplog.messages)

    with caplog.at_level(logging.ERROR, logger="asyncmq.worker"):
        await asyncio.to_thread(redis_server.stop)
        await _eventually(outage_noticed, "the worker to notice the server is gone")
        await asyncio.to_thread(redis_server.start)

    after = await producer.add_bulk([{"task_id": nap.name, "args": [n, 0]} for n in range(100, 200)])
    # A delayed job runs only if the worker's scheduler outlived the outage as well.
    delayed = await producer.add(nap.name, [200, 0], delay=0.2)
    final = await wait_for_counts(
        producer,
        lambda c: c["completed"] + c["failed"] == len(before) + len(after) + 1,
        "every job finished",
        within_s=30,
    )
    assert not running.done(), "the worker stopped"
    assert final == counts(completed=len(before) + len(after) + 1)
    completed = await producer.list_jobs(JobState.COMPLETED, limit=1000)
    assert {job.id for job in completed} == {*before, *after, delayed}
