"""What every peer's benchmark script shares: settings, a tiny Redis client, timing and the JSON report.

Standard library only, so that it imports in every peer's virtual environment whatever redis-py
version (or none) that peer brings. Its Redis client is used only for the benchmark's own
bookkeeping (marks written by the tasks, flushing the database, reading latencies back), and the
same client is used by every peer, so that bookkeeping costs every system the same.

How the process rate is measured, the same way for every system: the no-op task counts its calls in
the worker process; the first call writes `bench:first`, the N-th `bench:last` (two writes per run,
not per job). The rate is N / (last - first): from the worker's first job to its last, so that
interpreter start-up and imports, which differ by seconds between systems, are not counted.

On PostgreSQL (`--postgres`, run.py's PostgreSQL set) the jobs live in PostgreSQL and Redis still
keeps only that bookkeeping. Each peer there creates its database if it is missing (see
`postgres_database`) and drops and recreates its own tables before its run.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

__all__ = [
    "HERE",
    "LATENCY_KEY",
    "POSTGRES_URL",
    "MiniRedis",
    "NoopCounter",
    "PostgresDatabase",
    "Settings",
    "apaced",
    "created_with_asyncpg",
    "paced",
    "postgres_database",
    "run",
    "settings",
    "venv_bin",
]

HERE = Path(__file__).resolve().parent
POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/asyncmq_bench"
LATENCY_KEY = "bench:latency"
FIRST_KEY = "bench:first"
LAST_KEY = "bench:last"


class MiniRedis:
    """A blocking RESP client: one connection, one command at a time, safe to share between threads."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self._address = (parts.hostname or "127.0.0.1", parts.port or 6379)
        self._db = int(parts.path.lstrip("/") or 0)
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._file: Any = None

    def _connect(self) -> None:
        self._sock = socket.create_connection(self._address)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._file = self._sock.makefile("rb")
        self._send(("SELECT", self._db))

    def _send(self, args: Sequence[Any]) -> Any:
        assert self._sock is not None
        parts = [f"*{len(args)}\r\n".encode()]
        for arg in args:
            data = arg if isinstance(arg, bytes) else str(arg).encode()
            parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
        self._sock.sendall(b"".join(parts))
        return self._read()

    def _read(self) -> Any:
        line = self._file.readline()
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            return None if size < 0 else self._file.read(size + 2)[:-2]
        if kind == b"*":
            size = int(rest)
            return None if size < 0 else [self._read() for _ in range(size)]
        raise RuntimeError(f"unexpected reply {line!r}")

    def __call__(self, *args: Any) -> Any:
        with self._lock:
            if self._sock is None:
                self._connect()
            return self._send(args)


class NoopCounter:
    """Counts no-op jobs in a worker process; marks the first and the N-th in Redis (N from BENCH_JOBS)."""

    def __init__(self) -> None:
        self._count = itertools.count(1)  # `next` on it is atomic under the GIL: safe from worker threads
        self._target = int(os.environ.get("BENCH_JOBS", "0"))
        self._redis = MiniRedis(os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/9"))

    def __call__(self) -> None:
        n = next(self._count)
        if n == 1:
            self._redis("SET", FIRST_KEY, repr(time.time()))
        if n == self._target:
            self._redis("SET", LAST_KEY, repr(time.time()))

    def record_latency(self, enqueued_at: float) -> None:
        """The latency task's body: seconds from the producer's clock before its enqueue call to now."""
        self._redis("RPUSH", LATENCY_KEY, repr(time.time() - enqueued_at))


class Settings(argparse.Namespace):
    redis: str
    postgres: str
    jobs: int
    one_by_one: int
    concurrency: int
    rate: int
    latency_jobs: int


def settings(description: str | None = None) -> Settings:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/9", help="a database of its own: flushed")
    parser.add_argument(
        "--postgres",
        default=POSTGRES_URL,
        help="PostgreSQL peers: their database (created if missing; each drops and recreates its own tables)",
    )
    parser.add_argument("--jobs", type=int, default=20_000, help="no-op jobs the worker drains")
    parser.add_argument(
        "--one-by-one",
        type=int,
        default=2_000,
        help="of those, how many are enqueued one awaited call at a time",
    )
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--rate", type=int, default=200, help="paced producer in the latency phase, jobs/s")
    parser.add_argument("--latency-jobs", type=int, default=1_000)
    args = parser.parse_args(namespace=Settings())
    if args.redis.rstrip("/").endswith(("/0", ":6379")):
        parser.error("refusing to use (and flush) Redis database 0: pass a database of the benchmark's own")
    if postgres_database(args.postgres).name in ("", "postgres", "template0", "template1"):
        parser.error("refusing to use PostgreSQL's own databases: pass a database of the benchmark's own")
    args.one_by_one = min(args.one_by_one, args.jobs)
    return args


@dataclass(frozen=True)
class PostgresDatabase:
    """A benchmark database: its URL and name, and the URL of the `postgres` database that creates it."""

    url: str
    name: str
    maintenance_url: str


def postgres_database(url: str, peer: str = "") -> PostgresDatabase:
    """The database named in `url`, or with `peer` the peer's own next to it (`<name>_<peer>`), so that
    peers never touch each other's tables. Create it, if missing, from `maintenance_url`:
    `SELECT 1 FROM pg_database WHERE datname = <name>`, then `CREATE DATABASE "<name>"`."""
    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    if peer:
        name = f"{name}_{peer}"
    return PostgresDatabase(
        url=urlunsplit(parts._replace(path=f"/{name}")),
        name=name,
        maintenance_url=urlunsplit(parts._replace(path="/postgres")),
    )


async def created_with_asyncpg(database: PostgresDatabase) -> PostgresDatabase:
    """`database`, created if missing, through asyncpg (imported here: not every peer's venv has it)."""
    import asyncpg

    admin = await asyncpg.connect(database.maintenance_url)
    try:
        if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database.name):
            await admin.execute(f'CREATE DATABASE "{database.name}"')
    finally:
        await admin.close()
    return database


def flush(args: Settings) -> MiniRedis:
    redis = MiniRedis(args.redis)
    redis("FLUSHDB")
    return redis


def venv_bin(command: str) -> str:
    """The path of a command installed in this interpreter's virtual environment."""
    return str(Path(sys.executable).parent / command)


def start_worker(command: Sequence[str], args: Settings) -> subprocess.Popen[bytes]:
    """A worker in its own process, its output to .bench/logs/<script>.log, this folder importable."""
    log_name = Path(sys.argv[0]).stem
    logs = HERE.parent.parent / ".bench" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "BENCH_JOBS": str(args.jobs),
        "BENCH_CONCURRENCY": str(args.concurrency),
        "BENCH_REDIS": args.redis,
        "BENCH_POSTGRES": args.postgres,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])),
    }
    with (logs / f"{log_name}.log").open("wb") as log:
        return subprocess.Popen(
            list(command), cwd=HERE, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )


def stop_worker(worker: subprocess.Popen[bytes], timeout_s: float = 20) -> None:
    """SIGTERM (every peer's warm shutdown), then SIGKILL for the process group if it lingers."""
    if worker.poll() is None:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()


def wait_for_jobs(
    redis: MiniRedis, worker: subprocess.Popen[bytes], jobs: int, timeout_s: float = 900
) -> float:
    """Block until the worker marked its last no-op job; returns its process rate in jobs/s."""
    deadline = time.monotonic() + timeout_s
    while redis("GET", LAST_KEY) is None:
        if worker.poll() is not None:
            raise RuntimeError(f"worker exited with {worker.returncode}: see .bench/logs")
        if time.monotonic() > deadline:
            raise TimeoutError(f"the worker did not finish in {timeout_s}s")
        time.sleep(0.02)
    first, last = float(redis("GET", FIRST_KEY)), float(redis("GET", LAST_KEY))
    return jobs / (last - first)


def latency_figures(redis: MiniRedis, expected: int, timeout_s: float = 120) -> dict[str, float]:
    """p50 and p99 of the latencies the tasks pushed, in ms, once all `expected` are in."""
    deadline = time.monotonic() + timeout_s
    while redis("LLEN", LATENCY_KEY) < expected:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {redis('LLEN', LATENCY_KEY)} of {expected} latency jobs ran")
        time.sleep(0.05)
    values = sorted(float(v) * 1000 for v in redis("LRANGE", LATENCY_KEY, 0, -1))
    cut = statistics.quantiles(values, n=100)
    return {"latency_p50_ms": cut[49], "latency_p99_ms": cut[98]}


def paced(rate: int, jobs: int, enqueue: Callable[[float], None]) -> None:
    """Calls `enqueue(time.time())` `jobs` times at `rate` per second (a blocking producer)."""
    start = time.perf_counter()
    for i in range(jobs):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        enqueue(time.time())


async def apaced(rate: int, jobs: int, enqueue: Callable[[float], Awaitable[Any]]) -> None:
    """`paced` for an asyncio producer: awaits `enqueue(time.time())` `jobs` times at `rate` per second."""
    start = time.perf_counter()
    for i in range(jobs):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        await enqueue(time.time())


def timed(call: Callable[[int], None], jobs: int) -> float:
    """Jobs/s of `call(jobs)`."""
    start = time.perf_counter()
    call(jobs)
    return jobs / (time.perf_counter() - start)


def run(
    args: Settings,
    system: str,
    version: str,
    *,
    enqueue_one_by_one: Callable[[int], None],
    enqueue_bulk: Callable[[int], None] | None,
    bulk_method: str,
    worker_command: Sequence[str],
    latency_producer: Callable[[int, int], None],
    prepare: Callable[[], None] | None = None,
    notes: str = "",
) -> None:
    """The workload, the same for every system; reports its figures as JSON on stdout.

    1. `args.one_by_one` no-op jobs enqueued one call at a time, then the rest of `args.jobs` by the
       system's bulk call (or one at a time too, where it has none), each timed apart.
    2. One worker process started; it drains them; rate from its first job to its last.
    3. With the same worker running, `args.latency_jobs` latency jobs at `args.rate`/s, one at a time.
    """
    # SIGTERM (from run.py on a timeout) unwinds through the `finally` below, which stops the worker.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    redis = flush(args)
    if prepare is not None:
        prepare()  # what must follow the flush: a stream's consumer group, a PostgreSQL peer's tables
    figures: dict[str, Any] = {"jobs": args.jobs, "bulk_method": bulk_method, "notes": notes}
    figures["enqueue_one_by_one"] = timed(enqueue_one_by_one, args.one_by_one)
    rest = args.jobs - args.one_by_one
    figures["enqueue_bulk"] = timed(enqueue_bulk or enqueue_one_by_one, rest) if rest else None
    if enqueue_bulk is None:
        # No bulk call: both phases went one at a time; report them as one figure.
        figures["enqueue_one_by_one"] = args.jobs / (
            args.one_by_one / figures["enqueue_one_by_one"] + (rest / figures["enqueue_bulk"] if rest else 0)
        )
        figures["enqueue_bulk"] = None
    worker = start_worker(worker_command, args)
    try:
        figures["process"] = wait_for_jobs(redis, worker, args.jobs)
        latency_producer(args.rate, args.latency_jobs)
        figures.update(latency_figures(redis, args.latency_jobs))
    finally:
        stop_worker(worker)
    report(system, version, figures)


def report(system: str, version: str, figures: dict[str, Any]) -> None:
    """The script's result: one JSON object on the last line of stdout."""
    sys.stdout.write(json.dumps({"system": system, "version": version, **figures}) + "\n")
    sys.stdout.flush()
