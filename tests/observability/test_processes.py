"""`asyncmq worker start --processes 2`: two worker processes behind one metrics port, their
counters summed exactly, and a crashed child replaced."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time

import pytest

from asyncmq.backends.redis import RedisBackend
from asyncmq.cli.processes import child_argv
from asyncmq.queues import Queue
from tests.observability.app import ok
from tests.observability.support import finish, free_port, samples, scrape, scrape_until, start_worker

JOBS = 60


def children_of(pid: int) -> set[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return {int(line) for line in out.split()}


async def wait_for_children(pid: int, count: int, exclude: set[int] = frozenset()) -> set[int]:  # type: ignore[assignment]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = await asyncio.to_thread(children_of, pid) - exclude
        if len(found) == count:
            return found
        await asyncio.sleep(0.1)
    raise AssertionError(f"process {pid} never had {count} new children")


def test_a_child_gets_the_parents_command_line_less_what_only_the_parent_does() -> None:
    argv = [
        "worker",
        "start",
        "q",
        "--processes",
        "2",
        "--metrics-port=9100",
        "--metrics-host",
        "0.0.0.0",
        "-c",
        "5",
    ]
    assert child_argv(argv) == ["worker", "start", "q", "-c", "5", "--report-metrics", "--child"]


@pytest.mark.slow
@pytest.mark.usefixtures("cleanup")
async def test_two_worker_processes_report_summed_counters_and_a_killed_one_is_replaced(
    backend: RedisBackend, queue_name: str
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    parent = start_worker(queue_name, port, "--processes", "2")
    q = f'queue="{queue_name}"'
    try:
        first = await wait_for_children(parent.pid, 2)
        queue = Queue(queue_name, backend=backend)
        await queue.add_bulk([{"task_id": ok.name} for _ in range(JOBS)])
        expected = {
            f'asyncmq_jobs_completed_total{{{q},task="observed.ok"}}': JOBS,
            f'asyncmq_jobs_started_total{{{q},task="observed.ok"}}': JOBS,
            f"asyncmq_worker_concurrency{{{q}}}": 20,
            f"asyncmq_workers{{{q}}}": 2,
            f'asyncmq_queue_jobs{{{q},state="completed"}}': JOBS,
            'asyncmq_build_info{backend="redis",version="0.1.0"}': 1,
        }
        found = await scrape_until(url, expected)
        assert {name: found.get(name) for name in expected} == expected

        victim = min(first)
        os.kill(victim, signal.SIGKILL)
        replacement = await wait_for_children(parent.pid, 1, exclude=first)
        await queue.add_bulk([{"task_id": ok.name} for _ in range(JOBS)])
        more = {**expected, f'asyncmq_jobs_completed_total{{{q},task="observed.ok"}}': 2 * JOBS}
        more[f'asyncmq_jobs_started_total{{{q},task="observed.ok"}}'] = 2 * JOBS
        more[f'asyncmq_queue_jobs{{{q},state="completed"}}'] = 2 * JOBS
        more.pop(f"asyncmq_workers{{{q}}}")  # the killed child's heartbeat lingers until it expires
        found = await scrape_until(url, more)
        assert {name: found.get(name) for name in more} == more
        assert len(replacement) == 1
        assert victim not in replacement
        pids = samples(await asyncio.to_thread(scrape, url))
        assert not any("pid=" in name for name in pids)
    finally:
        parent.send_signal(signal.SIGTERM)
        err = await asyncio.to_thread(finish, parent, 60)
    assert parent.returncode == 0, err
    assert "Stopped 2 worker processes (1 restarted)." in err
