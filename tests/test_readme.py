"""Every Python block and shell command of README.md, run as written, checked for what the README says.

A block the suite cannot run carries `<!-- not run: REASON -->` on the line before it, and
`test_every_block_is_run_or_marked_with_a_reason` fails on a new block with neither a runner
here nor such a mark. A runner takes the block's text from the README each time, so an edit
to an example is what the suite runs. Where a command cannot run as it stands, the runner
changes it in one of these documented ways, and no other:

- addresses: `localhost:6379/0` becomes the test Redis (ASYNCMQ_TEST_REDIS_URL), the
  PostgreSQL and MongoDB URLs the test servers', and a published port (9100, 9101, 4318) a
  free one, the OTLP one served by a collector stand-in that records what it receives;
- names: the queue `emails` becomes a queue of the test's own (deleted afterwards), and the
  placeholders `ID` and `KEY` the job and schedule the test stored for them;
- bounds: a command that runs until stopped (a worker, an exporter) is stopped with SIGTERM
  once its effect is seen, a worker script with SIGINT; `events tail` gets `--limit 1`;
  the larger `bench` runs get `--jobs 200 --repeat 1`.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
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
from asyncmq.errors import JobNotFoundError, UnknownTaskError
from asyncmq.queues import Queue
from asyncmq.registry import get_task
from asyncmq.tasks import task

ROOT = Path(__file__).parents[1]
README = ROOT / "README.md"
REDIS_URL = os.environ.get("ASYNCMQ_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
POSTGRES_URL = os.environ.get("ASYNCMQ_TEST_POSTGRES_URL")
MONGO_URL = os.environ.get("ASYNCMQ_TEST_MONGO_URL")
#: How long a command may take to show its effect (a bound, not a measurement).
WAIT_S = 60.0
RUN_LANGUAGES = {"python", "bash", "console", "sh", "shell"}
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
    return command.replace("redis://localhost:6379/0", REDIS_URL)


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
        example.wait_for(lambda: example.stdout.count(completed) >= 1001, "1,001 completed jobs")
    example.stopped_cleanly()
    events = [line.strip() for line in example.stdout]
    assert events.count(completed.strip()) == 1001, example.output
    assert sorted(e for e in events if e.startswith("job:delayed")) == [
        "job:delayed app.tasks.cleanup",
        "job:delayed app.tasks.send_email",
        "job:delayed app.tasks.send_email",
    ], example.output
    assert not [e for e in events if e.startswith(("job:failed", "job:retried"))], example.output
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
            "queue drain": lambda: done(counts["waiting"] == counts["delayed"] == 0),
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


def test_the_command_line_worker_hints_at_app(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from asyncmq.cli.main import cli

    result = CliRunner().invoke(cli, ["worker", "start", "readme-hint", "--burst", "--backend", "memory://"])
    assert result.exit_code == 0, result.output
    with pytest.raises(UnknownTaskError, match="define or import it"):
        get_task("app.tasks.nothing")  # the CLI's hint does not outlive its run


# -- the index of blocks ----------------------------------------------------------------------


@pytest.mark.xfail(strict=True, reason="the observability, bench and backend blocks have no runner yet")
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


RUNNERS: dict[str, str] = {
    "Define tasks, add jobs, run a worker #1": "test_main_example",
    "Define tasks, add jobs, run a worker #2": "test_command_line_block",
    "Events #1": "test_events_block",
}


def test_main_example(tmp_path: Path) -> None:
    run_main_example(block("Define tasks, add jobs, run a worker #1"), tmp_path)


async def test_command_line_block(tmp_path: Path, queue_name: str, redis_backend: RedisBackend) -> None:
    await run_command_line_block(
        block("Define tasks, add jobs, run a worker #2"), tmp_path, queue_name, redis_backend
    )


async def test_events_block(capsys: pytest.CaptureFixture[str]) -> None:
    await run_events_block(block("Events #1"), capsys)
