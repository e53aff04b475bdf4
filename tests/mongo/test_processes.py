"""At-least-once and at-most-once-without-a-fault on MongoDB, with real worker processes:
a worker killed with SIGKILL mid-run loses no job, and four workers sharing a queue never
run a job twice."""

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
from tests.conformance.support import StartWorker
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


async def test_a_worker_process_killed_with_sigkill_mid_run_loses_no_job(
    backend: MongoBackend, mongo_url: str, database: str, tmp_path: Path, start_worker: StartWorker
) -> None:
    jobs = 300
    queue = Queue("mongo", backend=backend)
    ids = await queue.add_bulk([{"task_id": logged_nap.name, "args": [n, 0.05]} for n in range(jobs)])
    runs, log = tmp_path / "runs", tmp_path / "worker.log"
    children = await _workers(1, _url(mongo_url, database), runs, log, "--concurrency", "10", lease_s=1.0)
    try:
        await _until(queue, jobs // 5, children, log)
    finally:
        await _stop(children, kill=True)
    held = await queue.list_jobs("active", limit=jobs)  # the documents: counts may lag a kill
    assert held, "the killed worker held no job: nothing to recover"

    # The rescuer's lease is longer than the dead worker's, so only its jobs stall.
    os.environ["ASYNCMQ_TEST_RUNS"] = str(runs)
    try:
        await start_worker(Queue("mongo", backend=backend, lease=2.0).worker(handle_signals=False))
        deadline = time.monotonic() + WAIT_S
        while (await queue.counts())["completed"] < jobs:
            assert time.monotonic() < deadline, f"{await queue.counts()}"
            await asyncio.sleep(0.1)
    finally:
        del os.environ["ASYNCMQ_TEST_RUNS"]
    completed = await queue.list_jobs("completed", limit=jobs * 2)
    assert sorted(job.id for job in completed) == sorted(ids)
