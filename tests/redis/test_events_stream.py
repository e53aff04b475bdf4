"""Lifecycle events published to Redis, and followed from another process."""

from __future__ import annotations

import asyncio
import json
import signal
import sys

import pytest

from asyncmq.backends.redis import RedisBackend
from asyncmq.core.publisher import EventPublisher
from asyncmq.queues import Queue
from tests.redis.app import nap


async def test_published_events_are_read_back_in_order_with_their_payloads(
    backend: RedisBackend, queue_name: str
) -> None:
    publisher = EventPublisher(backend, flush_every_s=0.01)
    publisher.start()
    queue = Queue(queue_name, backend=backend)
    try:
        job_id = await queue.add(nap.name, args=[1, 0])
        await asyncio.wait_for(queue.worker(burst=True, handle_signals=False).run(), 10)
    finally:
        await publisher.stop()
    events = await backend.read_events(queue_name, "0", 0.1)
    job_events = [(name, payload["id"]) for _, name, payload in events if name.startswith("job:")]
    assert job_events == [("job:enqueued", job_id), ("job:started", job_id), ("job:completed", job_id)]
    completed = events[[name for _, name, _ in events].index("job:completed")][2]
    assert completed["queue"] == queue_name
    assert set(completed["timestamps"]) == {"created_at", "ready_at", "started_at", "finished_at"}
    assert [name for _, name, _ in events if name.startswith("worker:")] == [
        "worker:started",
        "worker:stopped",
    ]


async def test_events_tail_follows_a_queue_from_another_process(
    backend: RedisBackend, queue_name: str, redis_url: str
) -> None:
    tail = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "asyncmq", "events", "tail", queue_name, "--backend", redis_url,
        "--json", "--limit", "3", "--timeout", "20",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    publisher = EventPublisher(backend, flush_every_s=0.01)
    publisher.start()
    queue = Queue(queue_name, backend=backend)
    try:
        job_ids: list[str] = []
        while tail.returncode is None and len(job_ids) < 50:  # until the tail has read three
            job_ids.append(await queue.add(nap.name, args=[len(job_ids), 0]))
            await asyncio.wait_for(queue.worker(burst=True, handle_signals=False).run(), 10)
            try:
                await asyncio.wait_for(asyncio.shield(tail.wait()), 0.2)
            except TimeoutError:
                continue
        out, err = await asyncio.wait_for(tail.communicate(), 20)
    finally:
        await publisher.stop()
        if tail.returncode is None:
            tail.kill()
            await tail.wait()
    assert tail.returncode == 0, err.decode()
    lines = [json.loads(line) for line in out.decode().splitlines()]
    assert len(lines) == 3
    assert all(line["queue"] == queue_name for line in lines)
    assert {line["event"] for line in lines} <= {
        "job:enqueued",
        "job:started",
        "job:completed",
        "worker:started",
        "worker:stopped",
    }
    assert any(line.get("id") in job_ids for line in lines)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
async def test_events_tail_ends_quietly_with_0_on_ctrl_c_and_on_sigterm(
    backend: RedisBackend, queue_name: str, redis_url: str, sig: signal.Signals
) -> None:
    tail = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "asyncmq", "events", "tail", queue_name, "--backend", redis_url, "--json",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert tail.stdout is not None
    publisher = EventPublisher(backend, flush_every_s=0.01)
    publisher.start()
    queue = Queue(queue_name, backend=backend)
    try:
        first = asyncio.ensure_future(tail.stdout.readline())
        for attempt in range(50):  # until the tail prints: it is then following, its handlers set
            await queue.add(nap.name, args=[attempt, 0])
            await asyncio.wait_for(queue.worker(burst=True, handle_signals=False).run(), 10)
            done, _ = await asyncio.wait({first}, timeout=0.2)
            if done:
                break
        assert json.loads(await first)["queue"] == queue_name
        tail.send_signal(sig)
        _, err = await asyncio.wait_for(tail.communicate(), 20)
    finally:
        await publisher.stop()
        if tail.returncode is None:
            tail.kill()
            await tail.wait()
    assert (tail.returncode, err.decode()) == (0, "")
