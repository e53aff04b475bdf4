"""`asyncmq worker start`: one worker per queue in one process, stopped together."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import pytest

from asyncmq.backends.memory import InMemoryBackend
from asyncmq.cli.worker import Supervisor
from asyncmq.conf import Settings, configure
from asyncmq.core.event import Event, Payload
from asyncmq.core.seam import event_emitter
from asyncmq.queues import Queue
from tests.cli.helpers import asyncmq_command, call, invoke

if TYPE_CHECKING:
    from asyncmq.backends.base import BaseBackend

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")


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
    assert result.exit_code == 3  # a missing extra is a configuration error
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


def _hanging_worker(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    command = [*asyncmq_command(), "worker", "start", *args, "--app", "tests.cli.hang_app"]
    return subprocess.Popen(
        command,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def _after_level(lines: list[str]) -> list[str]:
    """Log lines without their time stamp: `LEVEL logger: message`."""
    return [re.sub(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ", "", line) for line in lines]


def _wait_for_started(proc: subprocess.Popen[str], count: int) -> list[str]:
    lines: list[str] = []
    for _ in range(count):
        lines += _read_until(proc.stderr, "started", 15)
        while not lines[-1].startswith("block job "):
            lines += _read_until(proc.stderr, "started", 15)
    return lines


@pytest.mark.slow
@pytest.mark.timeout(30)
def test_shutdown_says_when_it_begins_and_which_jobs_it_handed_back() -> None:
    env = {"ASYNCMQ_TEST_HANG_JOBS": "7", "ASYNCMQ_SHUTDOWN_GRACE_SECONDS": "0.5"}
    proc = _hanging_worker("hang", "--concurrency", "7", env=env)
    try:
        _wait_for_started(proc, 7)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=15)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr
    lines = _after_level(stderr.splitlines())
    worker = r"worker \S+:\d+:[0-9a-f]{8} of queue 'hang'"
    assert any(
        re.fullmatch(
            rf"INFO asyncmq\.worker: {worker} stopping: 7 jobs running, "
            r"waiting up to 0\.5 s for them \(shutdown grace\)",
            line,
        )
        for line in lines
    ), stderr
    assert any(
        re.fullmatch(
            rf"WARNING asyncmq\.worker: {worker} handed 7 jobs back to the queue, to run again: "
            r"h1, h2, h3, h4, h5 and 2 more",
            line,
        )
        for line in lines
    ), stderr
    assert lines[-1] == "Stopped 1 worker(s); 0 job(s) processed."


@pytest.mark.slow
@pytest.mark.timeout(30)
def test_a_second_signal_hands_the_running_job_back_and_names_it() -> None:
    proc = _hanging_worker("hang", env={"ASYNCMQ_TEST_HANG_JOBS": "1"})
    try:
        _wait_for_started(proc, 1)
        proc.send_signal(signal.SIGTERM)
        _read_until(proc.stderr, "stopping: 1 job running, waiting up to 30 s for it", 15)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=15)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr
    assert re.search(r"handed 1 job back to the queue, to run again: h1$", stderr, re.M), stderr


@pytest.fixture
def redis_url() -> str:
    url = os.environ.get("ASYNCMQ_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    try:
        import redis

        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except Exception as exc:
        from tests.redis.support import missing

        missing(f"no Redis at {url}: {exc}")
    return url


@pytest.mark.slow
@pytest.mark.timeout(40)
def test_cancelling_a_running_job_is_logged_as_a_cancellation_by_its_worker(redis_url: str) -> None:
    name = f"clitest-{uuid.uuid4().hex[:12]}"
    call(_on_redis(redis_url, lambda store: Queue(name, backend=store).add("clitest.block", job_id="c1")))
    proc = _hanging_worker(name, "--backend", redis_url, env={"ASYNCMQ_LEASE_SECONDS": "1.5"})
    try:
        _wait_for_started(proc, 1)
        cancelled = invoke("job", "cancel", "c1", "-q", name, "--backend", redis_url)
        assert (cancelled.exit_code, cancelled.output) == (0, "Cancelled job 'c1'.\n")
        lines = _read_until(proc.stderr, "c1", 15)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=15)
    finally:
        proc.kill()
        call(_on_redis(redis_url, lambda store: store.delete_queue(name)))
    assert _after_level(lines)[-1] == (
        f"WARNING asyncmq.worker: job c1 of queue {name!r} was cancelled; its attempt was stopped"
    )
    assert "taken from this worker" not in stderr
    assert "handed" not in stderr  # a cancelled job is not handed back


async def _on_redis(url: str, action: Callable[[BaseBackend], Awaitable[T]]) -> T:
    from asyncmq.backends import backend_from_url

    store = backend_from_url(url)
    await store.connect()
    try:
        return await action(store)
    finally:
        await store.close()


@pytest.mark.slow
@pytest.mark.timeout(40)
def test_processes_print_the_start_line_once_in_the_parent() -> None:
    proc = _hanging_worker("hang", "--processes", "2", "--burst", env={})
    try:
        _, stderr = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr
    lines = stderr.splitlines()
    assert [line for line in lines if "Starting" in line or "started on queue" in line] == [
        "Starting 2 worker processes on queue 'hang' on the memory backend. Ctrl-C to stop."
    ], stderr
    assert re.fullmatch(r"Started 2 worker processes: \[\d+, \d+\]", lines[1]), stderr
    assert lines[-1] == "Stopped 2 worker processes (0 restarted).", stderr
    assert len(lines) == 3, stderr


def test_worker_start_imports_the_settings_task_modules_and_logs_at_their_level(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = f"settings_app_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(
        "from asyncmq.tasks import task\n\n\n"
        f"@task(name={module + '.shout'!r})\n"
        "async def shout(word: str) -> str:\n"
        "    return word.upper()\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    backend = InMemoryBackend()
    configure(Settings(backend=backend, tasks=[module], logging_level="WARNING"))  # AsyncMQ's names
    levels: list[str] = []
    monkeypatch.setattr(logging, "basicConfig", lambda **kwargs: levels.append(kwargs["level"]))
    call(Queue("mail", backend=backend).add(f"{module}.shout", ["hi"], job_id="s1"))

    result = invoke("worker", "start", "mail", "--burst")

    assert result.exit_code == 0, result.output
    job = call(backend.get_job("mail", "s1"))
    assert job is not None
    assert (job.status, job.result) == ("completed", "HI")
    assert levels == ["WARNING"]


def test_a_settings_task_module_that_cannot_be_imported_is_named_with_the_setting(
    backend: InMemoryBackend,
) -> None:
    configure(Settings(backend=backend, app_modules=("no_such_module_here",)))
    result = invoke("worker", "start", "mail", "--burst")
    assert result.exit_code != 0
    assert "app_modules" in result.output
    assert "cannot import 'no_such_module_here': ModuleNotFoundError" in result.output


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_processes_give_up_on_a_child_that_keeps_failing_at_start_with_one_line() -> None:
    command = [
        *asyncmq_command(),
        "worker",
        "start",
        "crashq",
        "--processes",
        "2",
        "--app",
        "tests.cli.crash_app",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=50)

    lines = done.stderr.splitlines()
    assert done.returncode == 2, done.stderr  # the child's own: a bad --app value
    assert lines[-1] == (
        "Error: a worker process exited 5 times in a row within 10 s of starting (exit status 2; its own "
        "lines above say why): fix that and start again, or run the same command without --processes "
        "to see one worker alone"
    ), done.stderr
    assert "this module cannot be imported in a worker process" in done.stderr
    pauses = [float(m) for m in re.findall(r"starting another in ([\d.]+) s", done.stderr)]
    assert sorted(set(pauses)) == [0.25, 0.5, 1.0, 2.0], done.stderr  # doubled at each failed start
    assert "Traceback" not in done.stderr
