"""`asyncmq worker start --processes N`: N worker processes, one metrics port.

One Python process uses one core; a worker that should use every core runs as several
processes. The parent only supervises: it starts N children with the same command line, each
writing its metrics to a shared directory (prometheus_client's multiprocess mode), serves
their sum on `--metrics-port` together with the queue state it reads from the backend, and
restarts a child that dies. A dead child's live gauges are dropped (`mark_process_dead`);
its counters stay in the sums, as they should. SIGTERM/SIGINT are passed on to the children,
which shut down gracefully; the directory is removed at the end.

A child that fails soon after it started is restarted after a pause that doubles each time
(as systemd's and supervisord's restart limits do); when one keeps failing that way the
parent stops the others and ends with one line, instead of starting it forever: what kills
it at start (a module that raises on import in a worker, a bug) will not go away by itself.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass

import click

from asyncmq.cli.failures import CommandFailure, ExitCode
from asyncmq.logging import get_logger

__all__ = ["ProcessSupervisor", "child_argv"]

log = get_logger(__name__)

#: Options only the parent acts on, each followed by a value.
_PARENT_ONLY = frozenset({"--processes", "--metrics-port", "--metrics-host"})
_POLL_S = 0.5
#: A child that fails within this many seconds of its start failed to start.
QUICK_EXIT_S = 10.0
#: Failed starts in a row of one child that end the run.
QUICK_EXITS_TO_GIVE_UP = 5
#: The pause before the first restart after a failed start, doubled for each next one.
FIRST_RESTART_PAUSE_S = 0.25


def child_argv(argv: Sequence[str]) -> list[str]:
    """A child's command line: the parent's, less what only the parent does, plus the flags
    that make the child record metrics for the parent to serve and leave the start and stop
    lines to the parent."""
    child: list[str] = []
    skip_value = False
    for arg in argv:
        if skip_value:
            skip_value = False
            continue
        name, has_value, _ = arg.partition("=")
        if name in _PARENT_ONLY:
            skip_value = not has_value
            continue
        child.append(arg)
    return [*child, "--report-metrics", "--child"]


@dataclass
class _Slot:
    """One of the N children, and how its starts went."""

    child: subprocess.Popen[bytes]
    started: float
    failed_starts: int = 0
    restart_at: float | None = None

    @property
    def ended(self) -> bool:
        return self.restart_at is None and self.child.poll() is not None


class ProcessSupervisor:
    def __init__(self, argv: Sequence[str], processes: int, metrics_dir: str | None) -> None:
        self.command = [sys.executable, "-m", "asyncmq", *child_argv(argv)]
        self.processes = processes
        self.metrics_dir = metrics_dir
        self.slots: list[_Slot] = []
        self.restarts = 0
        self.failure: CommandFailure | None = None
        self._stopping = False

    def _spawn(self) -> subprocess.Popen[bytes]:
        env = dict(os.environ)
        if self.metrics_dir is not None:
            env["PROMETHEUS_MULTIPROC_DIR"] = self.metrics_dir
        # A session of its own: a Ctrl-C in the terminal reaches the parent only, which passes
        # one SIGTERM on; otherwise each child would get both and take the second as "now".
        return subprocess.Popen(self.command, env=env, start_new_session=True)

    def stop(self) -> None:
        self._stopping = True
        for slot in self.slots:
            slot.restart_at = None
            if slot.child.poll() is None:
                slot.child.send_signal(signal.SIGTERM)

    async def run(self, grace_s: float) -> None:
        """Supervise until stopped or every child ended by itself (--burst); raises the
        `failure` of a child that kept failing at start, once the others are stopped."""
        self.slots = [_Slot(self._spawn(), time.monotonic()) for _ in range(self.processes)]
        pids = [slot.child.pid for slot in self.slots]
        click.echo(f"Started {self.processes} worker processes: {pids}", err=True)
        while not self._stopping:
            await asyncio.sleep(_POLL_S)
            for slot in self.slots:
                if not self._stopping:
                    self._tend(slot, time.monotonic())
            if all(slot.ended for slot in self.slots):
                break
        await asyncio.to_thread(self._reap, grace_s)
        if self.failure is not None:
            raise self.failure

    def _tend(self, slot: _Slot, now: float) -> None:
        if slot.restart_at is not None:
            if now >= slot.restart_at:
                slot.child, slot.started, slot.restart_at = self._spawn(), now, None
                self.restarts += 1
            return
        code = slot.child.poll()
        if code is None or code == 0:  # a clean exit (--burst, done) is not replaced
            return
        self._forget(slot.child)
        ran_s = now - slot.started
        slot.failed_starts = slot.failed_starts + 1 if ran_s < QUICK_EXIT_S else 0
        if slot.failed_starts >= QUICK_EXITS_TO_GIVE_UP:
            self.failure = _cannot_start(slot.failed_starts, code)
            self.stop()
            return
        pause = FIRST_RESTART_PAUSE_S * 2 ** (slot.failed_starts - 1) if slot.failed_starts else 0.0
        slot.restart_at = now + pause
        log.warning(
            "worker process %d exited with %s after %.1f s; starting another in %.2f s",
            slot.child.pid,
            code,
            ran_s,
            pause,
        )

    def _reap(self, grace_s: float) -> None:
        for slot in self.slots:
            try:
                slot.child.wait(grace_s)
            except subprocess.TimeoutExpired:
                slot.child.kill()
                slot.child.wait()
            self._forget(slot.child)

    def _forget(self, child: subprocess.Popen[bytes]) -> None:
        if self.metrics_dir is not None:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(child.pid, self.metrics_dir)  # type: ignore[no-untyped-call]


def _cannot_start(times: int, code: int) -> CommandFailure:
    """The child's own exit code when it is one of ours (its line above says why), else 1."""
    kind = ExitCode(code) if code in ExitCode._value2member_map_ else ExitCode.REFUSED
    return CommandFailure(
        kind,
        f"a worker process exited {times} times in a row within {QUICK_EXIT_S:g} s of starting "
        f"(exit status {code}; its own lines above say why): fix that and start again, or run the "
        "same command without --processes to see one worker alone",
    )


def metrics_directory() -> str:
    """A fresh directory: stale files of an earlier run would be summed in."""
    return tempfile.mkdtemp(prefix="asyncmq-metrics-")


def remove_directory(path: str | None) -> None:
    if path is not None:
        shutil.rmtree(path, ignore_errors=True)
