from __future__ import annotations

import asyncio
import logging

import pytest

from asyncmq.core.event import Event
from asyncmq.job import JobState
from asyncmq.queues import Queue
from tests.conformance.support import counts
from tests.redis.app import nap
from tests.redis.support import kill_connections, wait_for_counts


async def test_hammer(backend, make_backend, redis_url, queue_name, run_worker, events, caplog) -> None:
    jobs = 1000
    name = f"asyncmq-{queue_name}"
    wb = await make_backend(f"{redis_url}?client_name={name}")
    producer = Queue(queue_name, backend=backend)
    ids = await producer.add_bulk([{"task_id": nap.name, "args": [n, 0.005]} for n in range(jobs)])
    queue = Queue(queue_name, backend=wb, lease=1.0, scan_interval=0.1, max_stalls=5)
    running = await run_worker(queue.worker(concurrency=20, handle_signals=False))
    kills = 0
    while (await producer.counts())["completed"] < jobs * 0.9:
        kills += await kill_connections(backend.client, name)
        await asyncio.sleep(0.005)
    final = await wait_for_counts(producer, lambda c: c["completed"] + c["failed"] == jobs, "all", within_s=30)
    print("kills", kills, "final", final, "stalled", len(events.of(Event.JOB_STALLED)))
    print("errors", [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING][:20])
    assert not running.done()
    assert final == counts(completed=jobs)
