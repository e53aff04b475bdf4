"""Every expected failure of the CLI, run as a user runs it (`python -m asyncmq ...` in a
process of its own): it ends in one line on stderr naming the problem and what to do, with
the exit code `asyncmq --help` documents for its kind, no traceback (unless `--debug` or
ASYNCMQ_DEBUG=1 asks for one), and no password from the backend URL.

The backends that fail are real: a loopback port nothing listens on (refused at once), a
redis-server of the test's own that wants a password, a port a socket already holds.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from asyncmq.cli.failures import ExitCode
from tests.private_servers import START_S, RedisServer, free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[2]
#: The password in every failing URL: it must never be printed.
SECRET = "s3cr3t-pw"
#: How long one failing command may take: failures are immediate, this only bounds a hang.
COMMAND_S = 60.0


def _env(**extra: str) -> dict[str, str]:
    """The test's environment less every ASYNCMQ_* setting (the test servers' variables
    included), so only what a case sets reaches the command."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("ASYNCMQ_")}
    return {**env, "PYTHONPATH": str(ROOT), **extra}


def asyncmq(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "asyncmq", *args],
        cwd=ROOT,
        env=env or _env(),
        capture_output=True,
        text=True,
        timeout=COMMAND_S,
        stdin=subprocess.DEVNULL,
    )


def assert_one_line(done: subprocess.CompletedProcess[str], code: ExitCode, *named: str) -> str:
    """Exit `code`, stderr one `Error: ...` line naming each of `named`, no traceback, no
    password; returns the line."""
    everything = done.stdout + done.stderr
    assert done.returncode == code, everything
    lines = done.stderr.splitlines()
    assert len(lines) == 1, everything
    line = lines[0]
    assert line.startswith("Error: "), everything
    assert "Traceback" not in everything
    assert SECRET not in everything
    for words in named:
        assert words in line, line
    return line


@pytest.fixture
def unreachable() -> str:
    """A Redis URL on a loopback port nothing listens on: connecting is refused at once."""
    return f"redis://:{SECRET}@127.0.0.1:{free_port()}/0"


@pytest.fixture(scope="module")
def locked_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A redis-server of this module's own that wants a password; yields a URL with the
    wrong one."""
    port = free_port()
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(tmp_path_factory.mktemp("locked-redis")), "--requirepass", "the-right-one"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        _wait_for_port(port, process)
        yield f"redis://:{SECRET}@127.0.0.1:{port}/0"
    finally:
        process.kill()
        process.wait(START_S)


def _wait_for_port(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_S
    while time.monotonic() < deadline:
        assert process.poll() is None, "redis-server exited"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on port {port}")


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A loopback port a socket of the test holds, listening."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


#: Every command that reads or changes the backend, as a newcomer types it (a worker without
#: --app too: its warning that no task is registered waits until it can start).
BACKEND_COMMANDS = {
    "queue list": ["queue", "list"],
    "queue info": ["queue", "info", "emails"],
    "queue pause": ["queue", "pause", "emails"],
    "queue drain": ["queue", "drain", "emails", "--yes"],
    "info": ["info"],
    "info --json": ["info", "--json"],
    "job list": ["job", "list", "-q", "emails"],
    "job inspect": ["job", "inspect", "j1", "-q", "emails"],
    "job cancel": ["job", "cancel", "j1", "-q", "emails"],
    "events tail": ["events", "tail", "emails", "--timeout", "5"],
    "worker start": ["worker", "start", "emails", "--burst"],
    "worker start --processes": ["worker", "start", "emails", "--burst", "--processes", "2"],
    "bench": ["bench", "--jobs", "10", "--repeat", "1"],
}  # fmt: skip


@pytest.mark.parametrize("command", list(BACKEND_COMMANDS))
def test_an_unreachable_backend_is_one_line_exit_4(command: str, unreachable: str) -> None:
    done = asyncmq(*BACKEND_COMMANDS[command], "--backend", unreachable)
    line = assert_one_line(done, ExitCode.UNREACHABLE, "cannot be reached", "127.0.0.1", "--backend")
    assert "redis://:***@127.0.0.1" in line or command == "bench"


@pytest.mark.parametrize(
    "url",
    [
        f"redis+cluster://default:{SECRET}@127.0.0.1:{{port}}",
        f"postgresql://app:{SECRET}@127.0.0.1:{{port}}/test",
        f"mongodb://app:{SECRET}@127.0.0.1:{{port}}/jobs?serverSelectionTimeoutMS=200&connectTimeoutMS=200",
    ],
    ids=["redis-cluster", "postgresql", "mongodb"],
)
def test_every_kind_of_unreachable_backend_is_one_line_exit_4(url: str) -> None:
    done = asyncmq("queue", "list", "--backend", url.format(port=free_port()))
    assert_one_line(done, ExitCode.UNREACHABLE, "127.0.0.1", "check that it is running")


def test_the_backend_from_the_environment_is_named_and_masked_too(unreachable: str) -> None:
    done = asyncmq("queue", "list", env=_env(ASYNCMQ_BACKEND=unreachable))
    assert_one_line(done, ExitCode.UNREACHABLE, "the backend at redis://:***@127.0.0.1", "cannot be reached")


@pytest.mark.parametrize("command", list(BACKEND_COMMANDS))
def test_a_wrong_password_is_one_line_exit_5(command: str, locked_redis: str) -> None:
    done = asyncmq(*BACKEND_COMMANDS[command], "--backend", locked_redis)
    assert_one_line(done, ExitCode.CREDENTIALS, "refused the login", "password")


def test_a_password_for_a_redis_that_has_none_is_one_line_exit_5() -> None:
    url = os.environ.get("ASYNCMQ_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    with_password = url.replace("redis://", f"redis://:{SECRET}@", 1)
    done = asyncmq("queue", "list", "--backend", with_password)
    if done.returncode == ExitCode.UNREACHABLE and not os.environ.get("CI"):
        pytest.skip(f"no Redis at {url}")
    assert_one_line(done, ExitCode.CREDENTIALS, "refused the login")


def test_worker_start_never_says_it_started_when_the_backend_is_unreachable(unreachable: str) -> None:
    done = asyncmq("worker", "start", "emails", "--backend", unreachable)
    assert_one_line(done, ExitCode.UNREACHABLE)
    assert "start" not in done.stderr.lower().replace("worker start", "")


@pytest.mark.parametrize("value", ["0", "-3"])
@pytest.mark.parametrize(
    "command",
    [["worker", "start", "emails", "--burst"], ["queue", "list"]],
    ids=["worker start", "queue list"],
)
def test_a_bad_worker_concurrency_variable_is_refused_naming_it(value: str, command: list[str]) -> None:
    done = asyncmq(*command, "--backend", "memory://", env=_env(ASYNCMQ_WORKER_CONCURRENCY=value))
    assert_one_line(
        done, ExitCode.CONFIGURATION, f"ASYNCMQ_WORKER_CONCURRENCY='{value}'", "from 1 to", "unset it"
    )


@pytest.mark.parametrize(
    ("variable", "value"),
    [("ASYNCMQ_SCAN_INTERVAL", "0"), ("ASYNCMQ_LEASE_SECONDS", "-1"), ("ASYNCMQ_CLAIM_BATCH_SIZE", "0")],
)
def test_other_bad_setting_variables_are_refused_naming_them(variable: str, value: str) -> None:
    done = asyncmq("queue", "list", "--backend", "memory://", env=_env(**{variable: value}))
    assert_one_line(done, ExitCode.CONFIGURATION, f"{variable}='{value}'")


@pytest.mark.parametrize(
    "url", [f"redis://:{SECRET}@127.0.0.1:6379/abc", "redis://127.0.0.1:6379/0?db=abc"], ids=["path", "query"]
)
def test_a_redis_database_that_is_not_a_number_is_refused(url: str) -> None:
    done = asyncmq("queue", "list", "--backend", url)
    assert_one_line(done, ExitCode.CONFIGURATION, "the database part 'abc' is not a number", "/0")
    from_env = asyncmq("queue", "list", env=_env(ASYNCMQ_BACKEND=url))
    assert_one_line(from_env, ExitCode.CONFIGURATION, "'abc'")


def test_events_tail_on_the_memory_backend_says_which_backends_can() -> None:
    done = asyncmq("events", "tail", "emails", "--backend", "memory://")
    assert_one_line(done, ExitCode.UNSUPPORTED, "memory backend", "Redis, PostgreSQL or MongoDB")


@pytest.mark.parametrize("processes", ["1", "2"])
def test_a_taken_metrics_port_names_metrics_port(taken_port: int, processes: str) -> None:
    done = asyncmq(
        "worker", "start", "emails", "--burst", "--backend", "memory://",
        "--metrics-port", str(taken_port), "--processes", processes,
    )  # fmt: skip
    assert_one_line(done, ExitCode.PORT, f"--metrics-port {taken_port}", "in use", "another --metrics-port")


def test_a_taken_exporter_port_names_port(taken_port: int) -> None:
    done = asyncmq("exporter", "--port", str(taken_port), "--backend", "memory://")
    line = assert_one_line(done, ExitCode.PORT, f"--port {taken_port}", "another --port")
    assert "--metrics-port" not in line


@pytest.mark.parametrize("how", ["--debug", "ASYNCMQ_DEBUG=1"])
def test_debug_adds_the_traceback_still_masked(how: str, unreachable: str) -> None:
    if how == "--debug":
        done = asyncmq("--debug", "queue", "list", "--backend", unreachable)
    else:
        done = asyncmq("queue", "list", "--backend", unreachable, env=_env(ASYNCMQ_DEBUG="1"))
    assert done.returncode == ExitCode.UNREACHABLE
    assert done.stderr.startswith("Traceback (most recent call last):")
    assert "ConnectionError" in done.stderr
    assert done.stderr.splitlines()[-1].startswith("Error: the backend at redis://:***@")
    assert SECRET not in done.stderr + done.stdout


def test_help_documents_every_exit_code() -> None:
    done = asyncmq("--help")
    assert done.returncode == 0, done.stderr
    assert "Exit codes:" in done.stdout
    for code in ExitCode:
        assert f"  {int(code)}  " in done.stdout
    assert "--debug" in done.stdout


# -- the exporter: one line when scrapes start failing, one when they work again ----------
def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as reply:
        return str(reply.read().decode())


def _until_serving(proc: subprocess.Popen[str]) -> list[str]:
    assert proc.stderr is not None
    lines: list[str] = []
    while not any("Metrics on" in line for line in lines):
        line = proc.stderr.readline()
        assert line, f"the exporter ended: {lines}"
        lines.append(line)
    return lines


def test_the_exporter_says_once_that_scrapes_fail_and_once_that_they_work_again() -> None:
    server = RedisServer()  # not started yet: its port refuses until it is
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "asyncmq", "exporter", "--port", str(port), "--backend", server.url],
        cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        _until_serving(proc)
        for _ in range(3):
            assert 'asyncmq_backend_up{backend="redis"} 0.0' in _scrape(port)
        server.start()
        for _ in range(2):
            assert 'asyncmq_backend_up{backend="redis"} 1.0' in _scrape(port)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=COMMAND_S)
    finally:
        proc.kill()
        server.remove()
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
    failing = [line for line in stderr.splitlines() if "reading queue state" in line]
    assert len(failing) == 2, stderr
    assert "failed (ConnectionError: " in failing[0]
    assert "asyncmq_backend_up is 0 until it works again" in failing[0]
    assert "works again" in failing[1]
