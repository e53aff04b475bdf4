"""At-least-once on PostgreSQL: no job is lost when every connection of a worker is killed
(`pg_terminate_backend`) or the server restarts. The restart runs on a private cluster the test
starts with `initdb`/`pg_ctl` on a free port, never on the shared server."""

from __future__ import annotations

import asyncio
import collections
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import asyncpg
import pytest

from asyncmq.backends.postgres import PostgresBackend
from asyncmq.queues import Queue
from asyncmq.tasks import task
from tests.cli.helpers import asyncmq_command
from tests.conformance.support import StartWorker
from tests.postgres.conftest import MakeBackend
from tests.redis.app import nap

ROOT = Path(__file__).resolve().parents[2]
RUNS: collections.Counter[str] = collections.Counter()
#: (attempts to reach, set when reached): what `_runs_reach` waits on.
TARGET: list[tuple[int, asyncio.Event]] = []
WAIT_S = 60.0


@task
async def counted(n: int) -> int:
    RUNS[str(n)] += 1
    for wanted, reached in TARGET:
        if RUNS.total() >= wanted:
            reached.set()
    await asyncio.sleep(0.002)
    return n


async def _runs_reach(wanted: int) -> None:
    reached = asyncio.Event()
    TARGET.append((wanted, reached))
    try:
        await asyncio.wait_for(reached.wait(), WAIT_S)
    finally:
        TARGET.remove((wanted, reached))


@pytest.fixture(autouse=True)
def _forget_runs() -> Iterator[None]:
    RUNS.clear()
    yield
    RUNS.clear()
    TARGET.clear()


def _named(url: str, name: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}application_name={name}"


async def _until_all_done(queue: Queue, jobs: int, progress: Callable[[], None] | None = None) -> None:
    deadline = time.monotonic() + WAIT_S
    while True:
        try:
            done = (await queue.counts())["completed"]
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            done = -1  # the server is away: look again
        if done == jobs:
            return
        assert time.monotonic() < deadline, f"{done} of {jobs} jobs completed within {WAIT_S}s"
        if progress is not None:
            progress()
        await asyncio.sleep(0.05)


async def _terminate(conn: asyncpg.Connection, name: str) -> int:
    killed: int = await conn.fetchval(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1", name
    )
    return killed


async def test_killing_every_connection_of_a_running_worker_loses_no_job(
    make_backend: MakeBackend,
    postgres_url: str,
    conn: asyncpg.Connection,
    start_worker: StartWorker,
) -> None:
    name = f"asyncmq-fault-{uuid.uuid4().hex[:8]}"
    worker_backend = await make_backend(dsn=_named(postgres_url, name))
    observer = Queue("faults", backend=await make_backend())
    jobs = 2000
    await observer.add_bulk([{"task_id": counted.name, "args": [n]} for n in range(jobs)])
    await start_worker(
        Queue("faults", backend=worker_backend, lease=2.0, scan_interval=0.2).worker(
            concurrency=10, handle_signals=False
        )
    )

    killed = []
    for _ in range(3):  # mid-run, three times
        await _runs_reach((len(killed) + 1) * jobs // 5)
        killed.append(await _terminate(conn, name))
    assert all(killed), f"a kill found no connection of the worker: {killed}"

    await _until_all_done(observer, jobs)
    assert set(RUNS) == {str(n) for n in range(jobs)}  # every job ran...
    assert RUNS.total() - jobs <= 3 * 50  # ...again only if it was in flight at a kill


async def test_a_producer_whose_idle_connections_were_killed_goes_on_without_an_error(
    make_backend: MakeBackend, postgres_url: str, conn: asyncpg.Connection
) -> None:
    name = f"asyncmq-fault-{uuid.uuid4().hex[:8]}"
    queue = Queue("faults", backend=await make_backend(dsn=_named(postgres_url, name)))
    first = await queue.add(counted.name, (1,))  # on the connection the backend keeps out
    for n in range(2, 5):
        assert await _terminate(conn, name)
        await asyncio.sleep(0.05)  # the kill reaches the client while it is idle
        await queue.add(counted.name, (n,))  # nothing was sent on the dead one: sent again

    assert (await queue.counts())["waiting"] == 4
    assert await queue.get_job(first) is not None


# -- a private cluster, restarted -------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _pg_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    if not found:
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl)")
    return found[-1].parent


class PrivateCluster:
    """A throwaway PostgreSQL cluster on a free loopback port, owned by the `postgres` user."""

    def __init__(self) -> None:
        self.bin = _pg_bin()
        self.port = _free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="asyncmq-pg-"))
        shutil.chown(self.dir, "postgres", "postgres")
        self.data = self.dir / "data"
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _as_postgres(self, *command: str) -> None:
        subprocess.run(
            ["su", "postgres", "-c", " ".join(command)], check=True, capture_output=True, timeout=60
        )

    def init(self) -> None:
        self._as_postgres(str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres")

    def start(self) -> None:
        options = f"'-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={self.dir}'"
        self._as_postgres(str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options, "-w", "-l",
                          str(self.dir / "log"), "start")  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        self._as_postgres(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def remove(self) -> None:
        subprocess.run(["su", "postgres", "-c", f"{self.bin / 'pg_ctl'} -D {self.data} -m immediate stop"],
                       capture_output=True, timeout=60)  # fmt: skip
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
async def cluster() -> AsyncIterator[PrivateCluster]:
    if os.geteuid() != 0 or shutil.which("su") is None:
        pytest.skip("starting a private cluster needs root (to run initdb as postgres)")
    private = PrivateCluster()
    try:
        await asyncio.to_thread(private.init)
        await asyncio.to_thread(private.start)
        yield private
    finally:
        await asyncio.to_thread(private.remove)


@pytest.mark.slow
async def test_a_server_restart_mid_run_loses_no_job(
    cluster: PrivateCluster, start_worker: StartWorker
) -> None:
    backend = PostgresBackend(cluster.url, schema="asyncmq")
    await backend.connect()
    try:
        queue = Queue("restart", backend=backend, lease=2.0, scan_interval=0.2)
        jobs = 1000
        await queue.add_bulk([{"task_id": counted.name, "args": [n]} for n in range(jobs)])
        await start_worker(queue.worker(concurrency=10, handle_signals=False))
        await _runs_reach(jobs // 3)

        await asyncio.to_thread(cluster.stop)
        await asyncio.sleep(0.5)  # the server stays away a moment: the worker keeps retrying
        await asyncio.to_thread(cluster.start)

        await _until_all_done(queue, jobs)
        assert set(RUNS) == {str(n) for n in range(jobs)}
        assert RUNS.total() - jobs <= 50
    finally:
        await backend.close()


# -- a worker process killed with SIGKILL ---------------------------------------------
@pytest.mark.slow
async def test_a_worker_process_killed_with_sigkill_mid_run_loses_no_job(
    backend: PostgresBackend, postgres_url: str, schema: str, tmp_path: Path, start_worker: StartWorker
) -> None:
    jobs = 300
    queue = Queue("killed", backend=backend)
    ids = await queue.add_bulk([{"task_id": nap.name, "args": [n, 0.02]} for n in range(jobs)])
    root = ROOT
    with (tmp_path / "worker.log").open("wb") as log:
        child = await asyncio.create_subprocess_exec(
            *asyncmq_command(), "worker", "start", "killed", "--backend", f"{postgres_url}?schema={schema}",
            "--app", "tests.redis.app", "--concurrency", "10",
            cwd=root, env={**os.environ, "PYTHONPATH": str(root), "ASYNCMQ_LEASE_SECONDS": "1.0"},
            stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + WAIT_S
            while (await queue.counts())["completed"] < jobs // 5:
                assert child.returncode is None, (tmp_path / "worker.log").read_text()
                assert time.monotonic() < deadline, "the worker process completed nothing"
                await asyncio.sleep(0.05)
        finally:
            child.kill()
            await child.wait()
    assert (await queue.counts())["active"] > 0, "the killed worker held no job: nothing to recover"

    # The rescuer's lease is longer, so only the dead worker's jobs stall.
    await start_worker(Queue("killed", backend=backend, lease=2.0).worker(handle_signals=False))
    await _until_all_done(queue, jobs)
    completed = await queue.list_jobs("completed", limit=jobs * 2)
    assert sorted(job.id for job in completed) == sorted(ids)
