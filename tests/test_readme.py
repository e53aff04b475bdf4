"""Every Python block, shell command and TOML file of README.md, run as written, checked for its effect.

A block the suite cannot run carries `<!-- not run: REASON -->` on the line before it, and
`test_every_block_is_run_or_marked_with_a_reason` fails on a new block with neither a runner
here nor such a mark, and on a mark without a reason. A runner takes the block's text from
the README each time, so an edit to an example is what the suite runs. Where a command cannot
run as it stands, the runner changes it in one of these documented ways, and no other:

- addresses: `redis://localhost:6379/0` (and `127.0.0.1`) becomes the test Redis
  (ASYNCMQ_TEST_REDIS_URL), the PostgreSQL and MongoDB URLs the test servers', and a published
  port (9100, 9101, 4318) a free one, the OTLP one served by a collector stand-in that keeps
  what it receives; a worker command with no `--backend` whose effect needs stored jobs gets
  ASYNCMQ_BACKEND pointing at the test Redis;
- names: the queue `emails` becomes a queue of the test's own (deleted afterwards), as do the
  PostgreSQL schema and MongoDB database of the backend examples; the placeholders `ID` and
  `KEY` become the job and schedule the test stored for them;
- bounds: a command that runs until stopped (a worker, an exporter) is stopped with SIGTERM
  once its effect is seen, a worker script with SIGINT (Ctrl-C); `events tail` gets
  `--limit 1`; the Redis `bench` runs get `--jobs 200 --repeat 1`;
- the rest: a confirmation prompt is answered yes; `pip install` gets `--no-index` (the suite
  runs offline: it shows the extras exist and are installed); a Python fragment that uses names
  it does not define (`pool`, `queue`) runs inside a function given them.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from asyncmq.backends.memory import InMemoryBackend
from asyncmq.backends.redis import RedisBackend
from asyncmq.conf import settings
from asyncmq.errors import JobNotFoundError, UnknownTaskError
from asyncmq.queues import Queue
from asyncmq.registry import get_task
from asyncmq.tasks import task
from tests.private_servers import free_port

ROOT = Path(__file__).parents[1]
README = ROOT / "README.md"
REDIS_URL = os.environ.get("ASYNCMQ_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
POSTGRES_URL = os.environ.get("ASYNCMQ_TEST_POSTGRES_URL")
MONGO_URL = os.environ.get("ASYNCMQ_TEST_MONGO_URL")
#: How long a command may take to show its effect (a bound, not a measurement; below the
#: suite's 60 s test timeout, so a command that never shows it fails with its output).
WAIT_S = 40.0
#: What the suite runs: code and commands, and the TOML the README gives a command to read.
RUN_LANGUAGES = {"python", "bash", "console", "sh", "shell", "toml"}
_MARK = re.compile(r"<!--\s*not run(?P<rest>.*?)-->", re.DOTALL)


@dataclass(frozen=True)
class Block:
    key: str  # "section title #n": the n-th runnable block under that heading
    language: str
    text: str
    line: int
    not_run: str | None  # the reason of its `<!-- not run: ... -->` mark, "" when it gives none

    def commands(self) -> list[str]:
        """The shell commands of a block: continuation lines joined, comments and blanks
        dropped; in a `console` block only the `$ ` lines."""
        lines = self.text.splitlines()
        if self.language == "console":
            lines = [line[2:] for line in lines if line.startswith("$ ")]
        joined = "\n".join(lines).replace("\\\n", " ")
        commands = []
        for line in joined.splitlines():
            command = re.sub(r"\s+#\s.*$", "", line).strip()
            if command and not command.startswith("#"):
                commands.append(re.sub(r"\s+", " ", command))
        return commands


def readme_blocks() -> list[Block]:
    blocks: list[Block] = []
    section = ""
    counts: dict[str, int] = {}
    lines = README.read_text(encoding="utf-8").splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        fence = re.match(r"^(\s*)```(\S*)\s*$", line)
        if fence is None:
            if line.startswith("#"):
                section = line.lstrip("#").strip()
            index += 1
            continue
        indent, language = fence.groups()
        end = index + 1
        while not re.match(rf"^{indent}```\s*$", lines[end]):
            end += 1
        if language in RUN_LANGUAGES:
            counts[section] = counts.get(section, 0) + 1
            before = next((lines[i] for i in range(index - 1, -1, -1) if lines[i].strip()), "")
            mark = _MARK.search(before)
            reason = mark.group("rest").strip().lstrip(":").strip() if mark else None
            text = textwrap.dedent("\n".join(lines[index + 1 : end]))
            blocks.append(Block(f"{section} #{counts[section]}", language, text, index + 1, reason))
        index = end + 1
    return blocks


def block(key: str) -> Block:
    (found,) = [b for b in readme_blocks() if b.key == key]
    return found


# -- running commands ------------------------------------------------------------------------


def command_env(**extra: str) -> dict[str, str]:
    """The environment a reader's shell has: `asyncmq` and `python` of this installation on
    the PATH, this checkout importable, nothing of the suite's own settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ASYNCMQ_", "OTEL_", "PROMETHEUS_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    env.update(extra)
    return env


def run(command: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        ["bash", "-c", command],
        cwd=cwd,
        env=env,
        input="y\n",  # a command that asks for confirmation is answered yes, as its reader would
        capture_output=True,
        text=True,
        timeout=WAIT_S * 3,
    )
    assert done.returncode == 0, f"{command!r} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done


@contextmanager
def running(command: str, cwd: Path, env: dict[str, str], stop: int = signal.SIGTERM) -> Iterator[Popen]:
    """A command that runs until stopped: started, handed to the test, then stopped by `stop`;
    it must then exit 0 (a clean shutdown is part of what the README promises)."""
    process = Popen(command, cwd, env)
    try:
        yield process
    finally:
        process.stop(stop)


class Popen:
    """A background command whose output is collected as it comes (read by threads, so a
    full pipe never blocks it)."""

    def __init__(self, command: str, cwd: Path, env: dict[str, str]) -> None:
        self.command = command
        self.process = subprocess.Popen(
            ["bash", "-c", f"exec {command}"],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        assert self.process.stdout is not None
        assert self.process.stderr is not None
        self._readers = [
            threading.Thread(target=self._read, args=(self.process.stdout, self.stdout), daemon=True),
            threading.Thread(target=self._read, args=(self.process.stderr, self.stderr), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(stream: Any, into: list[str]) -> None:
        for line in stream:
            into.append(line)

    @property
    def output(self) -> str:
        return "".join(self.stdout) + "".join(self.stderr)

    def wait_for(self, check: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + WAIT_S
        while not check():
            if self.process.poll() is not None:
                for reader in self._readers:
                    reader.join()
                if check():
                    return
                pytest.fail(
                    f"{self.command!r} exited {self.process.returncode} before {what}:\n{self.output}"
                )
            if time.monotonic() > deadline:
                pytest.fail(f"{self.command!r}: no {what} within {WAIT_S}s:\n{self.output}")
            time.sleep(0.05)

    def stop(self, sig: int) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            self.process.wait(WAIT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for reader in self._readers:
            reader.join()
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()

    def stopped_cleanly(self) -> None:
        assert self.process.returncode == 0, (
            f"{self.command!r} exited {self.process.returncode}:\n{self.output}"
        )
        assert "Traceback" not in self.output, self.output


def http_get(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            body: bytes = response.read()
            return body.decode()
    except (urllib.error.URLError, ConnectionError):
        return None


class Collector:
    """An OTLP/HTTP collector stand-in: keeps the body of every trace export it receives."""

    def __init__(self) -> None:
        bodies: list[bytes] = []
        self.bodies = bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                bodies.append(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Collector:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()

    def received(self, text: str) -> bool:
        return any(text.encode() in body for body in self.bodies)


# -- fixtures --------------------------------------------------------------------------------


@pytest.fixture
def queue_name() -> str:
    return f"readme-{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def redis_backend(queue_name: str) -> Any:
    """The test Redis, the test's queue deleted after it (the README's commands leave it behind)."""
    backend = RedisBackend(REDIS_URL)
    try:
        await backend.connect()
    except OSError as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"no Redis at {REDIS_URL}: {exc}")
    try:
        yield backend
    finally:
        await backend.delete_queue(queue_name)
        await backend.close()


def readme_url(command: str) -> str:
    return command.replace("redis://localhost:6379/0", REDIS_URL).replace(
        "redis://127.0.0.1:6379/0", REDIS_URL
    )


# -- the tasks the command-line examples find ---------------------------------------------------


@task(queue="emails", name="readme.fails")
async def fails() -> None:
    from asyncmq.errors import NonRetryableError

    raise NonRetryableError("the README's failed job")


# -- the blocks ---------------------------------------------------------------------------------


def write_app(directory: Path) -> Path:
    """The main example as a reader saves it: `app/tasks.py`, as `--app app.tasks` imports it."""
    path = directory / "app" / "tasks.py"
    path.parent.mkdir()
    path.write_text(block("Define tasks, add jobs, run a worker #1").text)
    return path


_OBSERVED = """
import runpy, sys
from asyncmq.core.seam import event_emitter
for name in ("job:completed", "job:failed", "job:retried", "job:delayed"):
    event_emitter.on(name, lambda p, name=name: print(name, p["task"], flush=True))
runpy.run_path(sys.argv[1], run_name="__main__")
"""


def run_main_example(_: Block, tmp_path: Path) -> None:
    """Saved to a file and run: the 1,001 jobs due now complete (on the settings' in-memory
    backend), the two delayed jobs and the schedule's next run wait as delayed, nothing fails;
    Ctrl-C stops it cleanly."""
    script = write_app(tmp_path)
    completed = "job:completed app.tasks.send_email\n"
    command = f"python -c {shlex.quote(_OBSERVED)} {script}"
    with running(command, tmp_path, command_env(), stop=signal.SIGINT) as example:
        example.wait_for(
            lambda: example.stdout.count(completed) >= 1001 or "job:failed" in example.output,
            "1,001 completed jobs",
        )
    example.stopped_cleanly()
    events = [line.strip() for line in example.stdout]
    assert events.count(completed.strip()) == 1001, example.output[-2000:]
    assert sorted(e for e in events if e.startswith("job:delayed")) == [
        "job:delayed app.tasks.cleanup",
        "job:delayed app.tasks.send_email",
        "job:delayed app.tasks.send_email",
    ], example.output
    failed = [e for e in events if e.startswith(("job:failed", "job:retried"))]
    assert not failed, f"{len(failed)} jobs failed or retried:\n{example.output[-2000:]}"
    assert "UnknownTaskError" not in example.output


@dataclass
class CommandLineQueue:
    """The queue the command-line block acts on: a failed job (its `ID`), a waiting one and a
    schedule (its `KEY`), on the test Redis."""

    queue: Queue
    failed: str = ""
    schedule: str = ""

    async def fill(self) -> None:
        self.failed = await self.queue.add("readme.fails")
        await self.queue.run(burst=True)
        assert (await self.queue.get_job(self.failed)).status == "failed"
        await self.queue.add("app.tasks.send_email", args=["ada@example.com", "Hello"])
        self.schedule = await self.queue.add_repeatable("app.tasks.cleanup", cron="*/5 * * * *")

    def line(self, command: str) -> str:
        line = re.sub(r"\bemails\b", self.queue.name, readme_url(command))
        return re.sub(r"\bID\b", self.failed, re.sub(r"\bKEY\b", self.schedule, line))

    async def status(self) -> str | None:
        try:
            return (await self.queue.get_job(self.failed)).status
        except JobNotFoundError:
            return None

    async def check(self, action: str, output: str) -> None:
        """What the README says the command shows or does."""
        name = self.queue.name
        counts = await self.queue.counts()
        effects: dict[str, Callable[[], Awaitable[bool]]] = {
            "queue list": lambda: done(name in output and "Backend: redis://" in output),
            "queue info": lambda: done(f"Repeatable {self.schedule}: app.tasks.cleanup" in output),
            "queue pause": self.queue.is_paused,
            "queue resume": lambda: not_(self.queue.is_paused()),
            # the waiting job goes; the schedule's next run, a delayed job, stays
            "queue drain": lambda: done((counts["waiting"], counts["delayed"]) == (0, 1)),
            "queue remove-repeatable": lambda: equal(self.queue.repeatables(), []),
            "job list": lambda: done(self.failed in output),
            "job inspect": lambda: done("the README's failed job" in output),
            "job retry": lambda: equal(self.status(), "waiting"),
            "job cancel": lambda: equal(self.status(), "cancelled"),
            "job remove": lambda: equal(self.status(), None),
            "info --json": lambda: done(name in json.dumps(json.loads(output)["queues"])),
        }
        assert action in effects, f"no check for `asyncmq {action}`: add one"
        assert await effects[action](), f"`asyncmq {action}` did not do what the README says:\n{output}"


async def done(value: bool) -> bool:
    return value


async def not_(value: Awaitable[bool]) -> bool:
    return not await value


async def equal(value: Awaitable[object], expected: object) -> bool:
    return await value == expected


async def run_command_line_block(
    code: Block, tmp_path: Path, queue_name: str, redis_backend: RedisBackend
) -> None:
    """The worker command with the example as `app/tasks.py` starts with its tasks; every
    other command acts on a queue of the test Redis and does what its line says."""
    write_app(tmp_path)
    target = CommandLineQueue(Queue(queue_name, backend=redis_backend))
    await target.fill()
    env = command_env()
    for command in code.commands():
        if command.startswith("export "):
            name, _, value = command.removeprefix("export ").partition("=")
            env[name] = readme_url(value)
            assert (name, env[name]) == ("ASYNCMQ_BACKEND", REDIS_URL), command
        elif command.startswith("asyncmq worker start"):
            with running(command, tmp_path, env) as worker:
                worker.wait_for(
                    lambda: "started on queue 'emails' (concurrency 20)" in worker.output, "a start"
                )
            worker.stopped_cleanly()
            assert "no task is registered" not in worker.output
        elif command.startswith("asyncmq events tail"):
            await tail_events(target.line(command) + " --limit 1", tmp_path, env, target.queue)
        else:
            output = run(target.line(command), tmp_path, env).stdout
            await target.check(" ".join(w for w in command.split()[1:3] if w.islower()), output)


async def tail_events(command: str, cwd: Path, env: dict[str, str], queue: Queue) -> None:
    """`events tail` prints the events a publishing worker sends: jobs are added and run by a
    worker with an `EventPublisher` (what `--publish-events` starts) until one is printed."""
    from asyncmq.core.publisher import EventPublisher

    with running(command, cwd, env) as tail:
        await asyncio.sleep(0)
        publisher = EventPublisher(queue.backend)
        publisher.start()
        try:
            while not tail.stdout and tail.process.poll() is None:
                await queue.add("app.tasks.send_email", args=["eve@example.com", "Tail"])
                await asyncio.sleep(0.2)
        finally:
            await publisher.stop()
        tail.wait_for(lambda: tail.process.poll() is not None, "exit after its one event (--limit 1)")
    tail.stopped_cleanly()
    assert re.search(r"job:\w+ +app\.tasks\.send_email", tail.output), tail.output


async def run_events_block(code: Block, capsys: pytest.CaptureFixture[str]) -> None:
    """The listener prints each completed job's task and how long it took from enqueue to finish."""
    exec(code.text, {})
    queue = Queue("readme-events", backend=InMemoryBackend())
    await queue.add("readme.echo")
    await queue.run(burst=True)
    from asyncmq.core.seam import event_emitter

    await event_emitter.drain()
    (line,) = capsys.readouterr().out.splitlines()
    name, seconds = line.split()
    assert name == "readme.echo"
    assert float(seconds) >= 0


@task(queue="readme-events", name="readme.echo")
async def echo() -> str:
    return "echo"


def test_unknown_task_error_names_the_registered_id_and_how_this_worker_finds_tasks() -> None:
    """The slip of the old README example: defined in a script, enqueued by module path."""

    @task(queue="emails", name="__main__.readme_send")
    async def readme_send() -> None: ...

    with pytest.raises(UnknownTaskError) as raised:
        get_task("app.tasks.readme_send")
    message = str(raised.value)
    assert "(registered: '__main__.readme_send')" in message, message
    assert "define or import it in this process before the worker starts" in message
    assert "--app" not in message  # a worker run from the user's code has no --app


async def test_the_command_line_worker_hints_at_app(queue_name: str, redis_backend: RedisBackend) -> None:
    """Under `asyncmq worker start` the way in is --app, and only there."""
    from click.testing import CliRunner

    from asyncmq.cli.main import cli

    queue = Queue(queue_name, backend=redis_backend)
    job_id = await queue.add("app.tasks.nothing")
    arguments = ["worker", "start", queue_name, "--burst", "--backend", REDIS_URL]
    result = await asyncio.to_thread(CliRunner().invoke, cli, arguments)
    assert result.exit_code == 0, result.output
    error = (await queue.get_job(job_id)).error
    assert error is not None
    assert error["message"].endswith("import the module that defines it: asyncmq worker start --app MODULE")
    with pytest.raises(UnknownTaskError, match="define or import it in this process"):
        get_task("app.tasks.nothing")  # the command's hint does not outlive its run


# -- the observability blocks ------------------------------------------------------------------


def metric(body: str | None, name: str) -> float | None:
    """The value of a one-series metric in a /metrics body, None when absent."""
    found = re.search(rf"^{name}(?:{{[^}}]*}})? (\S+)$", body or "", re.M)
    return float(found.group(1)) if found else None


async def run_observability_block(
    code: Block, tmp_path: Path, queue_name: str, redis_backend: RedisBackend
) -> None:
    """Each command serves what its comment says: /metrics and /healthz on 127.0.0.1, the
    children's metrics summed, traces sent to the OTLP endpoint, queue state with no worker."""
    queue = Queue(queue_name, backend=redis_backend)
    for command in code.commands():
        port = free_port()
        line = readme_url(command).replace("9100", str(port)).replace("9101", str(port))
        url = f"http://127.0.0.1:{port}"
        if "--otlp-endpoint" in command:
            await traced_worker(line, tmp_path, queue)
        elif command.startswith("asyncmq worker start") and "--processes" in command:
            summed_worker_metrics(line, url, tmp_path, int(command.split("--processes ")[1].split()[0]))
        elif command.startswith("asyncmq worker start"):
            worker_metrics(line, url, tmp_path)
        elif command.startswith("asyncmq exporter"):
            await queue.add("app.tasks.send_email", args=["ada@example.com", "Hello"])
            exported_queue_state(
                line, url, tmp_path, f'asyncmq_queue_jobs{{queue="{queue_name}",state="waiting"}} 1.0'
            )
        else:
            pytest.fail(f"no runner for {command!r}: add one")


def worker_metrics(command: str, url: str, cwd: Path) -> None:
    with running(command, cwd, command_env()) as worker:
        worker.wait_for(lambda: http_get(f"{url}/healthz") is not None, "/healthz")
        worker.wait_for(
            lambda: metric(http_get(f"{url}/metrics"), "asyncmq_worker_concurrency") == 20,
            "asyncmq_worker_concurrency 20 on /metrics",
        )
    worker.stopped_cleanly()


def summed_worker_metrics(command: str, url: str, cwd: Path, children: int) -> None:
    """Each child runs at the settings' concurrency; the parent's /metrics shows their sum."""
    total = children * settings.worker_concurrency
    with running(command, cwd, command_env()) as parent:
        parent.wait_for(lambda: f"Started {children} worker processes" in parent.output, "the children")
        parent.wait_for(
            lambda: metric(http_get(f"{url}/metrics"), "asyncmq_worker_concurrency") == total,
            f"the children's concurrency summed ({total}) on /metrics",
        )
    parent.stopped_cleanly()


def exported_queue_state(command: str, url: str, cwd: Path, series: str) -> None:
    with running(command, cwd, command_env()) as exporter:
        exporter.wait_for(lambda: series in (http_get(f"{url}/metrics") or ""), series)
    exporter.stopped_cleanly()


async def traced_worker(command: str, cwd: Path, queue: Queue) -> None:
    """The worker exports a `process QUEUE` span per attempt to the endpoint (those still
    buffered when it stops, on its way out). It has no `--backend`, so the test points
    ASYNCMQ_BACKEND at the test Redis, where it adds a job of a task the worker lacks: the
    attempt, and its span, happen all the same."""
    with Collector() as collector:
        line = command.replace("4318", str(collector.port)).replace("emails", queue.name)
        job_id = await queue.add("app.tasks.send_email", args=["ada@example.com", "Hello"])
        with running(line, cwd, command_env(ASYNCMQ_BACKEND=REDIS_URL)) as worker:
            await until(lambda: job_status(queue, job_id), "failed", worker)
        worker.stopped_cleanly()
    assert collector.received(f"process {queue.name}"), worker.output


async def job_status(queue: Queue, job_id: str) -> str:
    return (await queue.get_job(job_id)).status


async def until(read: Callable[[], Awaitable[object]], expected: object, process: Popen) -> None:
    """Wait (within WAIT_S) until `read()` gives `expected` while `process` runs."""
    deadline = time.monotonic() + WAIT_S
    while (value := await read()) != expected:
        if process.process.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"{process.command!r}: {value!r}, not {expected!r}:\n{process.output}")
        await asyncio.sleep(0.05)


_MYAPP = """
import asyncio

from prometheus_client import generate_latest

from asyncmq.queues import Queue
from asyncmq.tasks import task


@task(queue="QUEUE", name="myapp.work")
async def work() -> int:
    return 1


async def main() -> None:
    queue = Queue("QUEUE")
    await queue.add("myapp.work")
    await queue.run(burst=True)
    print(generate_latest().decode())


asyncio.run(main())
"""


def run_settings_command(code: Block, tmp_path: Path, queue_name: str) -> None:
    """`myapp` is a program that enqueues a job, runs it and prints its metrics: with the
    variables it counts the job in the default registry and exports its spans at exit."""
    (command,) = code.commands()
    (tmp_path / "myapp").mkdir()
    (tmp_path / "myapp" / "__main__.py").write_text(_MYAPP.replace("QUEUE", queue_name))
    with Collector() as collector:
        done = run(command.replace("4318", str(collector.port)), tmp_path, command_env())
    completed = f'asyncmq_jobs_completed_total{{queue="{queue_name}",task="myapp.work"}} 1.0'
    assert completed in done.stdout, done.stdout
    assert collector.received(f"send {queue_name}"), "no producer span exported"
    assert collector.received(f"process {queue_name}"), "no attempt span exported"


def run_generate_block(code: Block, tmp_path: Path) -> None:
    """On a copy of the sources (the dashboards' `*.dashboard.py` and docs/runbooks.md): the
    extras are there, `generate` writes the very files committed here, `--check` passes on
    them and fails naming a file that differs."""
    pip, generate, check = code.commands()
    copy_sources(tmp_path)
    env = command_env()

    # offline: pip answers from what is installed, and says so for each requirement of the extras
    installed = run(pip.replace("pip install", "pip install --no-index"), tmp_path, env)
    assert "does not provide the extra" not in installed.stderr, installed.stderr
    assert re.search(r"Requirement already satisfied: grafanalib", installed.stdout), installed.stdout

    run(generate, tmp_path, env)
    committed = [*(ROOT / "dashboards").glob("*.json"), ROOT / "alerts" / "asyncmq.rules.yml"]
    for path in committed:
        relative = path.relative_to(ROOT)
        assert (tmp_path / relative).read_bytes() == path.read_bytes(), f"{relative} differs"
    assert "up to date" in run(check, tmp_path, env).stdout
    with (tmp_path / "dashboards" / "queue.json").open("a") as changed:
        changed.write("\n")
    failed = subprocess.run(["bash", "-c", check], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert failed.returncode != 0
    assert "dashboards/queue.json" in failed.stderr, failed.stderr


def copy_sources(directory: Path) -> None:
    """What `asyncmq observability generate` reads: the dashboards' sources and the runbooks."""
    (directory / "dashboards").mkdir()
    (directory / "docs").mkdir()
    for source in (ROOT / "dashboards").glob("*.dashboard.py"):
        shutil.copy(source, directory / "dashboards" / source.name)
    shutil.copy(ROOT / "docs" / "runbooks.md", directory / "docs" / "runbooks.md")


def run_thresholds_block(code: Block, tmp_path: Path) -> None:
    """Saved as thresholds.toml and rendered by the command the README gives after it: the
    links open the given Grafana, every queue's depth alert fires above 5000 for 15m, and
    `reports` gets an age rule of its own (3600 s) that the default rule (300 s) leaves out;
    promtool accepts the rules."""
    (command,) = re.findall(r"`(asyncmq observability generate --alerts-config \S+)`", README.read_text())
    copy_sources(tmp_path)
    (tmp_path / command.split()[-1]).write_text(code.text)
    run(command, tmp_path, command_env())
    rules = (tmp_path / "alerts" / "asyncmq.rules.yml").read_text()
    assert "runbook_url: https://grafana.internal.example.org/d/asyncmq-runbooks" in rules
    assert re.search(r"expr: queue:asyncmq_queue_jobs_waiting:max > 5000\n    for: 15m\n", rules), rules
    age = "expr: queue:asyncmq_queue_oldest_job_age_seconds:max"
    assert f'{age}{{queue="reports"}} > 3600' in rules
    assert f'{age}{{queue!~"reports"}} > 300' in rules
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is not installed (scripts/services.sh installs it)")
        return
    # --lint=none: a queue's own rule shares its alert's name and labels with the default
    # rule by design (their queues never overlap), which promtool's duplicate lint flags
    checked = subprocess.run(
        [promtool, "check", "rules", "--lint=none", "alerts/asyncmq.rules.yml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=WAIT_S,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def run_bench_block(code: Block, tmp_path: Path) -> None:
    """The first command as written (a few seconds on memory://); the Redis ones with
    `--jobs 200 --repeat 1`: each prints the table, the second writes its JSON and PNG, the
    third runs four worker processes."""
    env = command_env()
    first, second, third = code.commands()
    table = run(first, tmp_path, env).stdout
    assert re.search(r"│ noop +│ process \(jobs/s\) +│ [\d,]+ ", table), table
    small = "--jobs 200 --repeat 1"
    run(readme_url(second.replace("--jobs 20000 --repeat 5", small)), tmp_path, env)
    figures = json.loads((tmp_path / "bench.json").read_text())
    assert {"noop", "io"} <= set(json.dumps(figures).split('"')), figures
    assert (tmp_path / "bench.png").read_bytes().startswith(b"\x89PNG")
    processes = run(f"{readme_url(third)} {small}", tmp_path, env)
    assert re.search(r"4 worker processes", processes.stdout + processes.stderr), processes.stdout


# -- the backend blocks ------------------------------------------------------------------------


async def round_trip(backend: Any, queue_name: str) -> None:
    """The backend the block built stores a job and gives it back."""
    await backend.connect()
    queue = Queue(queue_name, backend=backend)
    job_id = await queue.add("app.tasks.send_email", args=["ada@example.com", "Hello"])
    assert (await queue.get_job(job_id)).args == ["ada@example.com", "Hello"]
    assert (await queue.counts())["waiting"] == 1


async def run_redis_block(code: Block, queue_name: str, redis_backend: RedisBackend) -> None:
    namespace: dict[str, Any] = {}
    exec(readme_url(code.text), namespace)
    backend = namespace["backend"]
    assert isinstance(backend, RedisBackend)
    assert backend.prefix == "asyncmq"
    try:
        await round_trip(backend, queue_name)
        assert queue_name in await redis_backend.queues()  # the same keys as the default prefix's
    finally:
        await backend.close()


@pytest.fixture
async def postgres(queue_name: str) -> Any:
    """A raw asyncpg connection to the test PostgreSQL; the test's schema (named like its
    queue) is dropped afterwards."""
    import asyncpg

    url = POSTGRES_URL or "postgresql://postgres@127.0.0.1:5432/test"
    try:
        connection = await asyncpg.connect(url)
    except (OSError, asyncpg.PostgresError) as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"no PostgreSQL at {url}: {exc}")
    schema = queue_name.replace("-", "_")
    try:
        yield url, schema, connection
    finally:
        await connection.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await connection.close()


async def run_postgres_block(code: Block, queue_name: str, postgres: Any) -> None:
    from asyncmq.backends.postgres import PostgresBackend

    url, schema, _ = postgres
    text = code.text.replace("postgresql://app@db:5432/app", url).replace(
        'schema="asyncmq"', f'schema="{schema}"'
    )
    assert text.count(url) == text.count(schema) == 1, (
        "the example's URL or schema changed: update the runner"
    )
    namespace: dict[str, Any] = {}
    exec(text, namespace)
    backend = namespace["backend"]
    assert isinstance(backend, PostgresBackend)
    try:
        await round_trip(backend, queue_name)
    finally:
        await backend.close()


async def run_postgres_transaction_block(code: Block, queue_name: str, postgres: Any) -> None:
    """Run inside a function given the `pool` and `queue` it names: the order row and the job
    naming it are both stored; the same lines in a transaction that rolls back store neither."""
    import asyncpg

    from asyncmq.backends.postgres import PostgresBackend

    url, schema, connection = postgres
    backend = PostgresBackend(url, schema=schema)
    await backend.connect()  # creates the schema
    await connection.execute(f"CREATE TABLE {schema}.orders (id serial PRIMARY KEY, total int)")
    queue = Queue(queue_name, backend=backend)
    namespace: dict[str, Any] = {}
    exec(
        f"async def example(pool, queue):\n{textwrap.indent(code.text, '    ')}\n    return order_id",
        namespace,
    )
    pool = await asyncpg.create_pool(url, min_size=1, max_size=2, server_settings={"search_path": schema})
    try:
        order_id = await namespace["example"](pool, queue)
        (job,) = await queue.list_jobs("waiting")
        assert (job.task, job.args) == ("app.tasks.ship", [order_id])
        assert await connection.fetchval(f"SELECT total FROM {schema}.orders WHERE id = $1", order_id) == 42

        class RolledBack(Exception):
            pass

        rolled_back = (
            f"async def example(pool, queue):\n{textwrap.indent(code.text, '    ')}\n        raise Boom"
        )
        failing: dict[str, Any] = {"Boom": RolledBack}
        exec(rolled_back, failing)
        with pytest.raises(RolledBack):
            await failing["example"](pool, queue)
        assert len(await queue.list_jobs("waiting")) == 1
        assert await connection.fetchval(f"SELECT count(*) FROM {schema}.orders") == 1
    finally:
        await pool.close()
        await backend.close()


async def run_mongo_block(code: Block, queue_name: str) -> None:
    from pymongo import AsyncMongoClient
    from pymongo.errors import PyMongoError

    from asyncmq.backends.mongo import MongoBackend

    url = MONGO_URL or "mongodb://127.0.0.1:27017/?directConnection=true"
    client: AsyncMongoClient[Any] = AsyncMongoClient(url, serverSelectionTimeoutMS=3000)
    try:
        await client.admin.command("ping")
    except PyMongoError as exc:
        await client.close()
        if os.environ.get("CI"):
            raise
        pytest.skip(f"no MongoDB server at {url}: {exc}")
    database = queue_name.replace("-", "_")
    text = code.text.replace('"mongodb://db1,db2,db3/?replicaSet=rs0"', repr(url))
    text = text.replace('database="asyncmq"', f'database="{database}"')
    assert text.count(database) == 1, "the example's URL or database changed: update the runner"
    namespace: dict[str, Any] = {}
    exec(text, namespace)
    backend = namespace["backend"]
    assert isinstance(backend, MongoBackend)
    try:
        await round_trip(backend, queue_name)
        assert database in await client.list_database_names()
    finally:
        await backend.close()
        await client.drop_database(database)
        await client.close()


# -- the index of blocks ----------------------------------------------------------------------


def test_every_block_is_run_or_marked_with_a_reason() -> None:
    blocks = readme_blocks()
    text = README.read_text(encoding="utf-8")
    marks = _MARK.findall(text)
    marked = [b for b in blocks if b.not_run is not None]
    assert len(marks) == len(marked), "a `<!-- not run -->` mark that is not right before a block"
    assert all(b.not_run for b in marked), [b.key for b in marked if not b.not_run]
    runnable = {b.key for b in blocks if b.not_run is None}
    assert runnable - set(RUNNERS) == set(), "blocks with no runner here and no `<!-- not run: ... -->`"
    assert set(RUNNERS) - runnable == set(), "runners whose block is gone from the README"
    assert all(callable(globals().get(test)) for test in RUNNERS.values()), "a runner's test is missing"


#: Each runnable block and the test that runs it.
RUNNERS: dict[str, str] = {
    "Define tasks, add jobs, run a worker #1": "test_main_example",
    "Define tasks, add jobs, run a worker #2": "test_command_line_block",
    "Wait for a result #1": "test_results_block",
    "Jobs that wait for others #1": "test_dependencies_block",
    "Events #1": "test_events_block",
    "Redis #1": "test_redis_block",
    "PostgreSQL #1": "test_postgres_block",
    "PostgreSQL #2": "test_postgres_transaction_block",
    "MongoDB #1": "test_mongo_block",
    "Observability #1": "test_observability_block",
    "Observability #2": "test_settings_command",
    "Changing and regenerating them #1": "test_generate_block",
    "Benchmark #1": "test_bench_block",
    "Alerts #1": "test_thresholds_block",
}


@pytest.mark.slow
def test_main_example(tmp_path: Path) -> None:
    run_main_example(block("Define tasks, add jobs, run a worker #1"), tmp_path)


@pytest.mark.slow
async def test_command_line_block(tmp_path: Path, queue_name: str, redis_backend: RedisBackend) -> None:
    await run_command_line_block(
        block("Define tasks, add jobs, run a worker #2"), tmp_path, queue_name, redis_backend
    )


def test_results_block(capsys: pytest.CaptureFixture[str]) -> None:
    """The waiter prints the completed job's result, then the failed one's error type and message."""
    exec(block("Wait for a result #1").text, {"__name__": "readme_results"})
    assert capsys.readouterr().out.splitlines() == ["6", "ValueError negative amount"]


def test_dependencies_block(capsys: pytest.CaptureFixture[str]) -> None:
    """The child runs after its parent and sums the parent's result, added alone and as a flow."""
    exec(block("Jobs that wait for others #1").text, {"__name__": "readme_dependencies"})
    assert capsys.readouterr().out.splitlines() == ["6", "6"]


async def test_events_block(capsys: pytest.CaptureFixture[str]) -> None:
    await run_events_block(block("Events #1"), capsys)


async def test_redis_block(queue_name: str, redis_backend: RedisBackend) -> None:
    await run_redis_block(block("Redis #1"), queue_name, redis_backend)


async def test_postgres_block(queue_name: str, postgres: Any) -> None:
    await run_postgres_block(block("PostgreSQL #1"), queue_name, postgres)


async def test_postgres_transaction_block(queue_name: str, postgres: Any) -> None:
    await run_postgres_transaction_block(block("PostgreSQL #2"), queue_name, postgres)


async def test_mongo_block(queue_name: str) -> None:
    await run_mongo_block(block("MongoDB #1"), queue_name)


@pytest.mark.slow
async def test_observability_block(tmp_path: Path, queue_name: str, redis_backend: RedisBackend) -> None:
    await run_observability_block(block("Observability #1"), tmp_path, queue_name, redis_backend)


@pytest.mark.slow
def test_settings_command(tmp_path: Path, queue_name: str) -> None:
    run_settings_command(block("Observability #2"), tmp_path, queue_name)


@pytest.mark.slow
def test_generate_block(tmp_path: Path) -> None:
    run_generate_block(block("Changing and regenerating them #1"), tmp_path)


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_bench_block(tmp_path: Path, redis_backend: RedisBackend) -> None:
    from redis.asyncio import Redis

    client = Redis.from_url(REDIS_URL)
    before = {key async for key in client.scan_iter(match="asyncmq:{bench*")}
    try:
        await asyncio.to_thread(run_bench_block, block("Benchmark #1"), tmp_path)
        assert {key async for key in client.scan_iter(match="asyncmq:{bench*")} <= before  # left as it was
    finally:
        await client.aclose()


@pytest.mark.slow
def test_thresholds_block(tmp_path: Path) -> None:
    run_thresholds_block(block("Alerts #1"), tmp_path)
