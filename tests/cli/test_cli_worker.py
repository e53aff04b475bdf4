"""`asyncmq worker start`: one worker per queue in one process, stopped together."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from asyncmq.backends.memory import InMemoryBackend
from asyncmq.cli.worker import Supervisor
from asyncmq.core.event import Event, Payload
from asyncmq.core.seam import event_emitter
from asyncmq.queues import Queue
from tests.cli.helpers import asyncmq_command, call, invoke

ROOT = Path(__file__).resolve().parents[2]


async def _populate(backend: InMemoryBackend) -> None:
    mail = Queue("mail", backend=backend)
    await mail.add("clitest.greet", ["ada"], job_id="w1")
    await mail.add("clitest.greet", ["bob"], job_id="w2")
    await mail.add("clitest.explode", job_id="f1")
    await Queue("reports", backend=backend).add("clitest.greet", ["cy"], job_id="r1")


def test_worker_start_burst_works_every_queue_given_then_exits(backend: InMemoryBackend) -> None:
    call(_populate(backend))
    result = invoke(
        "worker", "start", "mail", "reports", "--burst", "--concurrency", "2", "--app", "tests.cli.app"
    )
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines()[0] == "Starting 2 worker(s) on the memory backend. Ctrl-C to stop."
    assert result.stderr.splitlines()[-1] == "Stopped 2 worker(s); 4 job(s) processed."
    mail = call(Queue("mail", backend=backend).counts())
    assert (mail["completed"], mail["failed"], mail["waiting"]) == (2, 1, 0)
    reports = call(backend.get_job("reports", "r1"))
    assert reports is not None
    assert (reports.status, reports.result) == ("completed", "hello cy")


def test_worker_start_announces_each_worker_with_its_concurrency(backend: InMemoryBackend) -> None:
    result = invoke("worker", "start", "mail", "mail", "--burst", "-c", "3")
    assert result.exit_code == 0, result.output
    started = [line for line in result.stderr.splitlines() if line.startswith("Worker ")]
    assert len(started) == 1  # a queue named twice gets one worker
    assert started[0].endswith(" started on queue 'mail' (concurrency 3).")


def test_worker_start_without_a_queue_is_a_usage_error() -> None:
    result = invoke("worker", "start")
    assert result.exit_code == 2
    assert "Missing argument 'QUEUE...'." in result.output


def test_metrics_port_without_the_observability_extra_fails_clearly(
    backend: InMemoryBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "asyncmq.observability", None)  # as if the extra were missing
    result = invoke("worker", "start", "mail", "--burst", "--metrics-port", "9464")
    assert result.exit_code == 1
    assert "Error: --metrics-port needs the observability extra: pip install 'asyncmq[observability]'" in (
        result.output
    )


def test_metrics_port_serves_metrics_while_the_worker_runs_and_prints_the_address(
    backend: InMemoryBackend,
) -> None:
    result = invoke("worker", "start", "mail", "--burst", "--metrics-port", "0")
    assert result.exit_code == 0, result.output
    assert re.search(
        r"Metrics on http://127\.0\.0\.1:\d+/metrics \(health: http://127\.0\.0\.1:\d+/healthz\)",
        result.output,
    )


def _started_workers(count: int) -> tuple[asyncio.Event, list[Payload]]:
    seen: list[Payload] = []
    all_started = asyncio.Event()

    def on_started(payload: Payload) -> None:
        seen.append(payload)
        if len(seen) == count:
            all_started.set()

    event_emitter.on(Event.WORKER_STARTED, on_started)
    return all_started, seen


async def test_one_signal_stops_every_worker_in_the_process() -> None:
    backend = InMemoryBackend()
    supervisor = Supervisor([Queue(name, backend=backend).worker(handle_signals=False) for name in "abc"])
    all_started, _ = _started_workers(3)
    running = asyncio.create_task(supervisor.run())
    await asyncio.wait_for(all_started.wait(), 5)
    supervisor.on_signal(signal.SIGTERM)
    await asyncio.wait_for(running, 5)
    assert [(await Queue(name, backend=backend).stats()).workers for name in "abc"] == [[], [], []]


@pytest.mark.parametrize("gap_s", [0.0, 0.2], ids=["before-the-shutdown-began", "during-the-grace"])
def test_a_second_signal_stops_at_once_without_waiting_for_running_jobs(gap_s: float) -> None:
    async def scenario() -> float:
        backend = InMemoryBackend()
        await Queue("mail", backend=backend).add("clitest.hang", job_id="h1")
        worker = Queue("mail", backend=backend).worker(handle_signals=False, shutdown_grace=30)
        supervisor = Supervisor([worker])
        hanging = asyncio.Event()
        event_emitter.on(Event.JOB_STARTED, lambda payload: hanging.set())
        running = asyncio.create_task(supervisor.run())
        await asyncio.wait_for(hanging.wait(), 5)
        supervisor.on_signal(signal.SIGTERM)
        await asyncio.sleep(gap_s)
        supervisor.on_signal(signal.SIGTERM)
        began = time.monotonic()
        await asyncio.wait_for(running, 5)
        return time.monotonic() - began

    assert asyncio.run(scenario()) < 2  # not the 30 s grace


def _read_until(stream: object, marker: str, deadline_s: float) -> list[str]:
    lines: list[str] = []
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        line = stream.readline()  # type: ignore[attr-defined]
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if marker in line:
            return lines
    raise AssertionError(f"never saw {marker!r}; got {lines}")


@pytest.mark.slow
@pytest.mark.timeout(30)
def test_sigterm_lets_the_running_job_finish_and_exits_cleanly() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [*asyncmq_command(), "worker", "start", "slow", "other", "--app", "tests.cli.slow_app"]
    proc = subprocess.Popen(
        command, cwd=ROOT, env=env, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        _read_until(proc.stderr, "slow job started", 15)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=15)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr
    lines = stderr.splitlines()
    assert "SIGTERM: finishing running jobs, then stopping (SIGTERM again: stop now)" in lines
    assert lines[-1] == "Stopped 2 worker(s); 1 job(s) processed."
