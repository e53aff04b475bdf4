"""A real worker process with --metrics-port, a known mix of jobs on Redis, and its /metrics
scraped over HTTP: every contract metric with its exact value, and promtool agrees."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from asyncmq.backends.redis import RedisBackend
from asyncmq.queues import Queue
from tests.observability.app import always_fails, fails_once, ok

ROOT = Path(__file__).resolve().parents[2]
REDIS_URL = os.environ.get("ASYNCMQ_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def scrape(url: str, accept: str | None = None) -> str:
    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(request, timeout=5) as response:
        return str(response.read().decode())


def samples(text: str) -> dict[str, float]:
    found = {}
    for line in text.splitlines():
        match = SAMPLE.match(line)
        if match:
            found[match.group(1) + (match.group(2) or "")] = float(match.group(3))
    return found


async def store_the_mix(queue: Queue) -> None:
    for _ in range(3):
        await queue.add(ok.name)
    await queue.add(fails_once.name, retries=1)
    await queue.add(always_fails.name, retries=1)
    await queue.add(ok.name, ttl=0.001)  # expires before any worker starts
    cancelled = await queue.add(ok.name, delay=60)
    assert await queue.cancel(cancelled)
    await queue.add(ok.name, delay=0.5)


def start_worker(queue: str, port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "asyncmq", "worker", "start", queue, "--backend", REDIS_URL,
         "--app", "tests.observability.app", "--metrics-port", str(port)],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip


async def scrape_until(url: str, expected: dict[str, float], deadline_s: float = 30) -> dict[str, float]:
    """Scrape until every expected sample has its value (the worker is still finishing), or
    the deadline passes; returns the last scrape for the test to assert on."""
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            found = samples(await asyncio.to_thread(scrape, url))
        except OSError:  # not listening yet
            found = {}
        if {name: found.get(name) for name in expected} == expected or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.1)


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
        openmetrics = await asyncio.to_thread(scrape, url, "application/openmetrics-text; version=1.0.0")
        health = await asyncio.to_thread(scrape, f"http://127.0.0.1:{port}/healthz")
    finally:
        worker.terminate()
        _, err = worker.communicate(timeout=30)
    assert worker.returncode == 0, err.decode()

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
