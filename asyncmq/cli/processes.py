"""`asyncmq worker start --processes N`: N worker processes, one metrics port.

One Python process uses one core; a worker that should use every core runs as several
processes. The parent only supervises: it starts N children with the same command line, each
writing its metrics to a shared directory (prometheus_client's multiprocess mode), serves
their sum on `--metrics-port` together with the queue state it reads from the backend, and
restarts a child that dies. A dead child's live gauges are dropped (`mark_process_dead`);
its counters stay in the sums, as they should. SIGTERM/SIGINT are passed on to the children,
which shut down gracefully; the directory is removed at the end.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence

import click

from asyncmq.logging import get_logger

__all__ = ["ProcessSupervisor", "child_argv"]

log = get_logger(__name__)

#: Options only the parent acts on, each followed by a value.
_PARENT_ONLY = frozenset({"--processes", "--metrics-port", "--metrics-host"})
_POLL_S = 0.5


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


class ProcessSupervisor:
    def __init__(self, argv: Sequence[str], processes: int, metrics_dir: str | None) -> None:
        self.command = [sys.executable, "-m", "asyncmq", *child_argv(argv)]
        self.processes = processes
        self.metrics_dir = metrics_dir
        self.children: list[subprocess.Popen[bytes]] = []
        self.restarts = 0
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
        for child in self.children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    async def run(self, grace_s: float) -> None:
        self.children = [self._spawn() for _ in range(self.processes)]
        click.echo(f"Started {self.processes} worker processes: {[c.pid for c in self.children]}", err=True)
        while not self._stopping:
            await asyncio.sleep(_POLL_S)
            for index, child in enumerate(self.children):
                code = child.poll()
                if code is not None and code != 0 and not self._stopping:
                    self._replace(index, child)  # a clean exit (--burst, done) is not replaced
            if all(child.poll() is not None for child in self.children):
                break  # every child ended by itself (--burst)
        await asyncio.to_thread(self._reap, grace_s)

    def _replace(self, index: int, child: subprocess.Popen[bytes]) -> None:
        log.warning("worker process %d exited with %s; starting another", child.pid, child.returncode)
        self._forget(child)
        self.children[index] = self._spawn()
        self.restarts += 1

    def _reap(self, grace_s: float) -> None:
        for child in self.children:
            try:
                child.wait(grace_s)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
            self._forget(child)

    def _forget(self, child: subprocess.Popen[bytes]) -> None:
        if self.metrics_dir is not None:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(child.pid, self.metrics_dir)  # type: ignore[no-untyped-call]


def metrics_directory() -> str:
    """A fresh directory: stale files of an earlier run would be summed in."""
    return tempfile.mkdtemp(prefix="asyncmq-metrics-")


def remove_directory(path: str | None) -> None:
    if path is not None:
        shutil.rmtree(path, ignore_errors=True)
