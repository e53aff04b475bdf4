"""At-most-once-without-a-fault on MongoDB, with real worker processes: four workers sharing a
queue never run a job twice. A worker killed with SIGKILL mid-run, and the other faults, are in
the fault-injection suite (tests/faults)."""

from __future__ import annotations

import asyncio
import collections
import os
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from asyncmq.backends.mongo import MongoBackend
from asyncmq.queues import Queue
from tests.cli.helpers import asyncmq_command
from tests.mongo.app import logged_nap

ROOT = Path(__file__).resolve().parents[2]
WAIT_S = 60.0

pytestmark = pytest.mark.slow


def _url(mongo_url: str, database: str) -> str:
    return urlunsplit(urlsplit(mongo_url)._replace(path=f"/{database}"))


async def _workers(
    count: int, url: str, runs: Path, log: Path, *options: str, lease_s: float = 30.0
) -> list[asyncio.subprocess.Process]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ASYNCMQ_TEST_RUNS": str(runs)}
    env["ASYNCMQ_LEASE_SECONDS"] = str(lease_s)
    children = []
    with log.open("ab") as out:
        for _ in range(count):
            children.append(
                await asyncio.create_subprocess_exec(
                    *asyncmq_command(),
                    "worker",
                    "start",
                    "mongo",
                    "--backend",
                    url,
                    "--app",
                    "tests.mongo.app",
                    *options,
                    cwd=ROOT,
                    env=env,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=out,
                    stderr=asyncio.subprocess.STDOUT,
                )
            )
    return children


async def _until(queue: Queue, completed: int, children: list[asyncio.subprocess.Process], log: Path) -> None:
    deadline = time.monotonic() + WAIT_S
    while (await queue.counts())["completed"] < completed:
        assert all(child.returncode is None for child in children), log.read_text()  # noqa: ASYNC240
        assert time.monotonic() < deadline, f"not {completed} jobs completed in {WAIT_S}s"
        await asyncio.sleep(0.05)


async def _stop(children: list[asyncio.subprocess.Process], *, kill: bool) -> None:
    for child in children:
        if child.returncode is None:
            child.kill() if kill else child.terminate()
    for child in children:
        await child.wait()


async def test_four_worker_processes_on_one_queue_never_run_a_job_twice(
    backend: MongoBackend, mongo_url: str, database: str, tmp_path: Path
) -> None:
    jobs = 800
    queue = Queue("mongo", backend=backend)
    runs, log = tmp_path / "runs", tmp_path / "workers.log"
    children = await _workers(4, _url(mongo_url, database), runs, log, "--concurrency", "10")
    try:
        deadline = time.monotonic() + WAIT_S
        while len((await queue.stats()).workers) < 4:  # all four wait: each races for every job
            assert time.monotonic() < deadline, log.read_text()
            await asyncio.sleep(0.05)
        await queue.add_bulk([{"task_id": logged_nap.name, "args": [n, 0.05]} for n in range(jobs)])
        await _until(queue, jobs, children, log)
    finally:
        await _stop(children, kill=False)

    records = [line.split() for line in runs.read_text().splitlines()]
    ran = collections.Counter(int(number) for number, _ in records)
    assert sorted(ran) == list(range(jobs))
    twice = {number: n for number, n in ran.items() if n > 1}
    assert not twice, f"run more than once: {twice}"
    pids = collections.Counter(pid for _, pid in records)
    assert len(pids) == 4, f"not every worker process ran jobs: {pids}"
