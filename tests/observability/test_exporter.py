"""The standalone exporter: queue state from the backend with no worker running, so a
queue-depth or no-worker alert fires when every worker is gone."""

from __future__ import annotations

import asyncio
import time

import pytest

from asyncmq.backends.redis import RedisBackend
from asyncmq.queues import Queue
from tests.observability.app import ok
from tests.observability.conftest import REDIS_URL
from tests.observability.support import asyncmq_process, finish, free_port, scrape_until


@pytest.mark.slow
@pytest.mark.usefixtures("cleanup")
async def test_the_exporter_shows_waiting_jobs_and_their_age_with_no_worker_running(
    backend: RedisBackend, queue_name: str
) -> None:
    queue = Queue(queue_name, backend=backend)
    first_added = time.time()
    for _ in range(4):
        await queue.add(ok.name)
    await queue.add(ok.name, delay=300)
    port = free_port()
    exporter = asyncmq_process("exporter", "--backend", REDIS_URL, "--port", str(port))
    q = f'queue="{queue_name}"'
    expected = {
        f'asyncmq_queue_jobs{{{q},state="waiting"}}': 4,
        f'asyncmq_queue_jobs{{{q},state="delayed"}}': 1,
        f'asyncmq_queue_jobs{{{q},state="active"}}': 0,
        f"asyncmq_workers{{{q}}}": 0,
        'asyncmq_backend_up{backend="redis"}': 1,
        'asyncmq_build_info{backend="redis",version="0.1.0"}': 1,
    }
    try:
        found = await scrape_until(f"http://127.0.0.1:{port}/metrics", expected)
        scraped_at = time.time()
    finally:
        exporter.terminate()
        err = await asyncio.to_thread(finish, exporter, 30)
    assert exporter.returncode == 0, err
    assert {name: found.get(name) for name in expected} == expected
    age = found[f"asyncmq_queue_oldest_job_age_seconds{{{q}}}"]
    assert 0 < age <= scraped_at - first_added
    assert not any(name.startswith("asyncmq_jobs_started_total") for name in found)  # no job metrics here
