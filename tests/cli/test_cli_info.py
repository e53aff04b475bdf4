"""`asyncmq info`: version, backend, queues with counts, live workers."""

from __future__ import annotations

import json
import time

from asyncmq.backends.base import WorkerInfo
from asyncmq.backends.memory import InMemoryBackend
from asyncmq.queues import Queue
from tests.cli.helpers import call, invoke, table_rows

ZERO = {
    "waiting": 0,
    "delayed": 0,
    "active": 0,
    "completed": 0,
    "failed": 0,
    "expired": 0,
    "cancelled": 0,
    "blocked": 0,
}


def _live_worker(backend: InMemoryBackend) -> WorkerInfo:
    now = time.time()
    worker = WorkerInfo("box:42:abcd", "mail", "box", 42, 4, now - 5, now, now + 60, running=1)
    call(backend.heartbeat(worker, [], now + 60))
    return worker


def test_info_json_gives_version_backend_queues_and_live_workers(backend: InMemoryBackend) -> None:
    call(Queue("mail", backend=backend).add("clitest.greet", ["ada"]))
    worker = _live_worker(backend)
    result = invoke("info", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "version": "0.1.0",
        "backend": "memory://",
        "queues": [{"name": "mail", "paused": False, "counts": {**ZERO, "waiting": 1}, "workers": 1}],
        "workers": [
            {
                "id": "box:42:abcd",
                "queue": "mail",
                "host": "box",
                "pid": 42,
                "concurrency": 4,
                "running": 1,
                "started_at": worker.started_at,
                "heartbeat_at": worker.heartbeat_at,
            }
        ],
    }


def test_info_leaves_out_workers_whose_heartbeat_expired(backend: InMemoryBackend) -> None:
    now = time.time()
    gone = WorkerInfo("box:1:dead", "mail", "box", 1, 4, now - 100, now - 90, now - 60)
    call(backend.heartbeat(gone, [], now))
    result = invoke("info", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["workers"] == []


def test_info_tables_show_each_queue_and_worker(backend: InMemoryBackend) -> None:
    call(Queue("mail", backend=backend).add("clitest.greet", ["ada"]))
    _live_worker(backend)
    result = invoke("info")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("asyncmq 0.1.0 on the memory backend\n")
    rows = table_rows(result.stdout)
    assert rows[1] == ["mail", "running", "1", "0", "0", "0", "0", "0", "0", "0"]
    assert rows[3][:4] == ["box:42:abcd", "mail", "4", "1"]


def test_info_on_an_empty_backend_says_there_is_nothing(backend: InMemoryBackend) -> None:
    result = invoke("info")
    assert (result.exit_code, result.stdout) == (
        0,
        "asyncmq 0.1.0 on the memory backend\nBackend: memory://\nNo queues.\nNo live workers.\n",
    )
