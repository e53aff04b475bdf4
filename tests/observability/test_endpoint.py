"""A real worker process with --metrics-port, a known mix of jobs on Redis, and its /metrics
scraped over HTTP: every contract metric with its exact value, and promtool agrees."""

from __future__ import annotations

import asyncio
import subprocess

import pytest

from asyncmq.backends.redis import RedisBackend
from asyncmq.queues import Queue
from tests.observability.app import always_fails, fails_once, ok
from tests.observability.support import OPENMETRICS, finish, free_port, scrape, scrape_until, start_worker


async def store_the_mix(queue: Queue) -> None:
    for _ in range(3):
        await queue.add(ok.name)
    await queue.add(fails_once.name, retries=1)
    await queue.add(always_fails.name, retries=1)
    await queue.add(ok.name, ttl=0.001)  # expires before any worker starts
    cancelled = await queue.add(ok.name, delay=60)
    assert await queue.cancel(cancelled)
    await queue.add(ok.name, delay=0.5)


@pytest.mark.slow
@pytest.mark.usefixtures("cleanup")
async def test_a_worker_serves_every_contract_metric_with_exact_values(
    backend: RedisBackend, queue_name: str
) -> None:
    queue = Queue(queue_name, backend=backend)
    await store_the_mix(queue)
    q = f'queue="{queue_name}"'
    expected = {
        f'asyncmq_jobs_started_total{{{q},task="observed.ok"}}': 4,
        f'asyncmq_jobs_started_total{{{q},task="observed.fails_once"}}': 2,
        f'asyncmq_jobs_started_total{{{q},task="observed.always_fails"}}': 2,
        f'asyncmq_jobs_completed_total{{{q},task="observed.ok"}}': 4,
        f'asyncmq_jobs_completed_total{{{q},task="observed.fails_once"}}': 1,
        f'asyncmq_jobs_completed_total{{{q},task="observed.always_fails"}}': 0,
        f'asyncmq_jobs_retried_total{{{q},task="observed.fails_once"}}': 1,
        f'asyncmq_jobs_retried_total{{{q},task="observed.always_fails"}}': 1,
        f'asyncmq_jobs_failed_total{{error_type="ValueError",{q},task="observed.always_fails"}}': 1,
        f'asyncmq_jobs_expired_total{{{q},task="observed.ok"}}': 1,
        f'asyncmq_jobs_cancelled_total{{{q},task="observed.ok"}}': 0,  # cancelled by the producer
        f'asyncmq_jobs_enqueued_total{{{q},task="observed.ok"}}': 0,  # stored by the producer
        f"asyncmq_jobs_stalled_total{{{q}}}": 0,
        f"asyncmq_rate_limited_total{{{q}}}": 0,
        f"asyncmq_jobs_in_progress{{{q}}}": 0,
        f"asyncmq_worker_concurrency{{{q}}}": 10,
        f"asyncmq_job_wait_seconds_count{{{q}}}": 8,
        f'asyncmq_job_duration_seconds_count{{{q},task="observed.ok"}}': 4,
        f'asyncmq_job_duration_seconds_count{{{q},task="observed.fails_once"}}': 2,
        f'asyncmq_job_duration_seconds_count{{{q},task="observed.always_fails"}}': 2,
        f"asyncmq_job_latency_seconds_count{{{q}}}": 5,
        f"asyncmq_schedule_lateness_seconds_count{{{q}}}": 1,
        f'asyncmq_queue_jobs{{{q},state="completed"}}': 5,
        f'asyncmq_queue_jobs{{{q},state="failed"}}': 1,
        f'asyncmq_queue_jobs{{{q},state="expired"}}': 1,
        f'asyncmq_queue_jobs{{{q},state="cancelled"}}': 1,
        f'asyncmq_queue_jobs{{{q},state="waiting"}}': 0,
        f'asyncmq_queue_jobs{{{q},state="delayed"}}': 0,
        f'asyncmq_queue_jobs{{{q},state="active"}}': 0,
        f"asyncmq_queue_oldest_job_age_seconds{{{q}}}": 0,
        f"asyncmq_workers{{{q}}}": 1,
        'asyncmq_backend_up{backend="redis"}': 1,
        'asyncmq_build_info{backend="redis",version="0.1.0"}': 1,
        'asyncmq_event_listener_errors_total{event="job:completed"}': 0,
    }
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    worker = start_worker(queue_name, port)
    try:
        found = await scrape_until(url, expected)
        text = await asyncio.to_thread(scrape, url)
        openmetrics = await asyncio.to_thread(scrape, url, OPENMETRICS)
        health = await asyncio.to_thread(scrape, f"http://127.0.0.1:{port}/healthz")
    finally:
        worker.terminate()
        err = finish(worker, 30)
    assert worker.returncode == 0, err

    assert {name: found.get(name) for name in expected} == expected
    operations = {
        k: v for k, v in found.items() if k.startswith('asyncmq_backend_operations_total{backend="redis"')
    }
    assert operations['asyncmq_backend_operations_total{backend="redis",operation="claim"}'] >= 1
    assert found['asyncmq_backend_operation_seconds_count{backend="redis",operation="finish"}'] >= 1
    assert health == "ok\n"
    assert openmetrics.rstrip().endswith("# EOF")
    check = await asyncio.to_thread(
        subprocess.run, ["promtool", "check", "metrics"], input=text.encode(), capture_output=True
    )
    assert check.returncode == 0, check.stderr.decode() + check.stdout.decode()
