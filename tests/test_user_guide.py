"""The performance-tuning examples users follow (see docs/tuning.md), one by one, working as written.

The Redis examples run on the test Redis (its address, 127.0.0.1 rather than the examples'
localhost, comes from ASYNCMQ_TEST_REDIS_URL); the others take `InMemoryBackend` where an
example builds a backend only to hold a setting.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import textwrap
import time
import urllib.request
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

from asyncmq.backends.memory import InMemoryBackend
from asyncmq.backends.redis import RedisBackend
from asyncmq.conf import configure, settings
from asyncmq.core.seam import event_emitter
from asyncmq.logging import logger
from asyncmq.queues import Queue
from asyncmq.tasks import task


@task(queue="perf")
async def noop() -> bool:
    """A minimal task for pure overhead measurement."""
    return True


@task(queue="maintenance", name="app.cleanup")
async def cleanup() -> str:
    return "clean"


REDIS_URL = os.environ.get("ASYNCMQ_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
async def guide_redis() -> AsyncIterator[None]:
    """The examples use the default prefix and the queue "perf": start and end with it empty."""
    from redis.asyncio import Redis

    client = Redis.from_url(REDIS_URL)
    try:
        await client.ping()  # type: ignore[misc]  # redis-py types it sync-or-async
    except OSError as exc:
        await client.aclose()
        if os.environ.get("CI"):
            raise
        pytest.skip(f"no Redis at {REDIS_URL}: {exc}")

    async def wipe() -> None:
        keys = [key async for key in client.scan_iter(match="asyncmq:{perf}:*")]
        if keys:
            await client.delete(*keys)

    await wipe()
    yield
    await wipe()
    await client.aclose()


@pytest.mark.usefixtures("guide_redis")
async def test_the_benchmark_example_enqueues_then_processes_every_job() -> None:
    backend = RedisBackend(redis_url=REDIS_URL)
    queue = Queue(name="perf", backend=backend, concurrency=10)
    completed: list[str] = []
    all_done = asyncio.Event()

    def count(payload: dict[str, object]) -> None:
        completed.append(str(payload["id"]))
        if len(completed) == 1000:
            all_done.set()

    event_emitter.on("job:completed", count)

    start = time.time()
    for _ in range(1000):
        await noop.enqueue(backend)
    logger.info(f"Enqueued 1000 jobs in {time.time() - start:.2f}s")
    assert (await queue.counts())["waiting"] == 1000

    runner = asyncio.create_task(queue.run())
    await asyncio.wait_for(all_done.wait(), 30)
    runner.cancel()
    await asyncio.gather(runner, return_exceptions=True)
    counts = await queue.counts()
    assert (counts["completed"], counts["waiting"], counts["active"]) == (1000, 0, 0)
    await backend.close()


def test_worker_concurrency_is_set_on_the_queue() -> None:
    queue = Queue(name="perf", backend=InMemoryBackend(), concurrency=20)
    assert queue.concurrency == 20
    assert queue.worker().concurrency == 20


def test_rate_limit_is_five_jobs_per_second_on_the_queue() -> None:
    queue = Queue(name="api_calls", backend=InMemoryBackend(), rate_limit=5, rate_interval=1.0)
    assert queue.rate is not None
    assert (queue.rate.limit, queue.rate.interval_s) == (5, 1.0)


def test_the_global_settings_class_sets_backend_and_scan_interval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = tmp_path / "guide_settings.py"
    module.write_text(
        textwrap.dedent(
            """
            import os

            from asyncmq.backends.base import BaseBackend
            from asyncmq.backends.redis import RedisBackend
            from asyncmq.conf.global_settings import Settings as BaseSettings


            class Settings(BaseSettings):
                backend: BaseBackend = RedisBackend(redis_url=os.environ["GUIDE_REDIS_URL"])
                # Lower scan interval to 0.2 seconds for sub-second delayed job latency
                scan_interval: float = 0.2
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("ASYNCMQ_SETTINGS_MODULE", "guide_settings.Settings")
    monkeypatch.setenv("GUIDE_REDIS_URL", REDIS_URL)
    configure(None)

    assert settings.scan_interval == 0.2
    assert isinstance(settings.backend, RedisBackend)
    assert Queue("perf").backend is sys.modules["guide_settings"].Settings.backend
    assert Queue("perf").scan_interval_s == 0.2


def test_the_per_queue_scan_interval_overrides_the_setting() -> None:
    # Override to poll every 0.2s just for the 'perf' queue
    queue = Queue(name="perf", backend=InMemoryBackend(), concurrency=20, scan_interval=0.2)
    assert settings.scan_interval == 1.0
    assert queue.scan_interval_s == 0.2
    assert Queue(name="other", backend=InMemoryBackend()).scan_interval_s == 1.0


async def test_a_cron_repeatable_fires_at_each_minute_boundary() -> None:
    queue = Queue(name="maintenance", backend=InMemoryBackend(), scan_interval=0.2)
    queue.add_repeatable(task_id="app.cleanup", cron="*/1 * * * *")  # as the guide writes it: no await
    assert await queue.repeatables() == []
    await queue.run(burst=True)  # a worker stores it as it starts (and, nothing due, ends)

    (occurrence,) = await queue.list_jobs("delayed")
    assert occurrence.task == "app.cleanup"
    assert occurrence.delay_until is not None
    boundary = datetime.fromtimestamp(occurrence.delay_until, UTC)
    assert (boundary.second, boundary.microsecond) == (0, 0)
    assert 0 < occurrence.delay_until - time.time() <= 60

    worker = queue.worker()
    assert await worker.scheduler.tick(now=occurrence.delay_until - 0.001) == occurrence.delay_until
    assert (await queue.counts())["waiting"] == 0
    await worker.scheduler.tick(now=occurrence.delay_until)
    counts = await queue.counts()
    assert (counts["waiting"], counts["delayed"]) == (1, 1)  # this minute's run, the next one stored
    (following,) = await queue.list_jobs("delayed")
    assert following.delay_until == occurrence.delay_until + 60
    assert await worker.process()
    assert (await queue.get_job(occurrence.id)).result == "clean"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_the_prometheus_listener_example_observes_real_jobs() -> None:
    registry = CollectorRegistry()
    job_started = Counter("asyncmq_job_started", "Jobs started", registry=registry)
    job_duration = Histogram("asyncmq_job_duration_seconds", "Task duration", registry=registry)

    event_emitter.on("job:started", lambda _: job_started.inc())
    event_emitter.on(
        "job:completed",
        lambda p: job_duration.observe(p["timestamps"]["finished_at"] - p["timestamps"]["created_at"]),
    )
    port = _free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    try:
        queue = Queue("perf", backend=InMemoryBackend())
        for _ in range(25):
            await queue.add(noop.name)
        await asyncio.wait_for(queue.run(burst=True), 10)
        body = await asyncio.to_thread(
            lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
        )
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    assert "asyncmq_job_started_total 25.0" in body
    assert "asyncmq_job_duration_seconds_count 25.0" in body
