"""Helpers of the observability tests: `asyncmq` child processes, scrapes, samples."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import IO

from tests.observability.conftest import REDIS_URL

ROOT = Path(__file__).resolve().parents[2]

OPENMETRICS = "application/openmetrics-text; version=1.0.0"
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


def asyncmq_process(*args: str) -> subprocess.Popen[bytes]:
    """`python -m asyncmq ARGS` from the repository root. Its stderr goes to a temporary file,
    which `finish` reads: a pipe read only at the end could fill and stall a chatty process."""
    errors = tempfile.TemporaryFile()  # noqa: SIM115  (closed by `finish`)
    process = subprocess.Popen(
        [sys.executable, "-m", "asyncmq", *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=errors,
    )
    _STDERR[process.pid] = errors
    return process


def finish(process: subprocess.Popen[bytes], timeout: float) -> str:
    """Wait for `process` (started by `asyncmq_process`) to end; what it wrote to stderr."""
    process.wait(timeout)
    with _STDERR.pop(process.pid) as errors:
        errors.seek(0)
        return errors.read().decode(errors="replace")


_STDERR: dict[int, IO[bytes]] = {}


def start_worker(queue: str, port: int, *extra: str) -> subprocess.Popen[bytes]:
    return asyncmq_process(
        "worker", "start", queue, "--backend", REDIS_URL, "--app", "tests.observability.app",
        "--metrics-port", str(port), *extra,
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
