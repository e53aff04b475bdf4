"""Churn on PostgreSQL: table and index sizes through a long run, and the cost of a scrape of a
queue holding a million waiting jobs.

    .venv/bin/python benchmarks/postgres_churn.py --postgres postgresql://postgres@127.0.0.1:5432/test

Churn: a producer here adds `--jobs` no-op jobs in bulk (10,000 a call), keeping at most
`--backlog` waiting, while one `asyncmq worker start` process (concurrency 10) runs them under
the default retention (the newest 10,000 completed jobs kept, the rest deleted as they finish).
At the start, every `--every` jobs, at the end and after `--settle` idle seconds it reads the
size of each table with its indexes (`pg_total_relation_size`) and the dead rows PostgreSQL
counts in `jobs` (`n_dead_tup`). Whether the server vacuums on its own (`autovacuum`) is
printed with the table: it decides what bloat is left.

Scrape: `--waiting` jobs added to one queue and left waiting, then `asyncmq exporter` serves
the schema's metrics and `--scrapes` scrapes of its `/metrics` are timed (and, beside them, the
backend's `stats` call the exporter makes per queue).

Every run uses a schema of its own (`asyncmq_churn`), dropped before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import asyncpg

from asyncmq.backends.postgres import PostgresBackend
from asyncmq.bench.measure import percentile
from asyncmq.queues import Queue

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = "asyncmq_churn"
TASK = "benchmarks.tasks.noop"
CHUNK = 10_000
TABLES = ("jobs", "counts", "queues", "workers", "events")


def options() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--jobs", type=int, default=1_000_000, help="jobs through the worker")
    parser.add_argument("--every", type=int, default=100_000, help="jobs between size readings")
    parser.add_argument("--backlog", type=int, default=50_000, help="most jobs waiting at once")
    parser.add_argument("--settle", type=float, default=60.0, help="idle seconds before the last reading")
    parser.add_argument("--waiting", type=int, default=1_000_000, help="jobs waiting for the scrape")
    parser.add_argument("--scrapes", type=int, default=20)
    return parser.parse_args()


def url_with_schema(url: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}schema={SCHEMA}"


async def drop_schema(conn: asyncpg.Connection) -> None:
    await conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")


async def sizes(conn: asyncpg.Connection) -> dict[str, float]:
    """MB of each table with its indexes and TOAST, and the dead rows counted in `jobs`."""
    found = {
        table: await conn.fetchval("SELECT pg_total_relation_size($1)", f"{SCHEMA}.{table}") / 2**20
        for table in TABLES
    }
    found["jobs indexes"] = await conn.fetchval("SELECT pg_indexes_size($1)", f"{SCHEMA}.jobs") / 2**20
    found["dead rows"] = await conn.fetchval(
        "SELECT n_dead_tup FROM pg_stat_user_tables WHERE schemaname = $1 AND relname = 'jobs'", SCHEMA
    )
    return found


@contextlib.contextmanager
def process(command: list[str]) -> Iterator[subprocess.Popen[bytes]]:
    child = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        yield child
    finally:
        child.terminate()
        try:
            child.wait(30)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


async def churn(args: argparse.Namespace, conn: asyncpg.Connection) -> list[tuple[str, dict[str, float]]]:
    backend = PostgresBackend(args.postgres, schema=SCHEMA)
    queue = Queue("churn", backend=backend)
    await queue.counts()  # makes the schema
    readings = [("start", await sizes(conn))]
    worker = [sys.executable, "-m", "asyncmq", "worker", "start", "churn", "--backend"]
    worker += [url_with_schema(args.postgres), "--app", "benchmarks.tasks", "--concurrency", "10"]
    worker += ["--log-level", "warning"]
    with process(worker) as child:
        added, next_reading, started = 0, args.every, time.perf_counter()
        while True:
            counts = await queue.counts()
            pending = counts["waiting"] + counts["active"]
            done = added - pending
            if done >= next_reading:
                readings.append((f"{next_reading:,} jobs", await sizes(conn)))
                print(f"{done:,} jobs done, {done / (time.perf_counter() - started):,.0f}/s", file=sys.stderr)
                next_reading += args.every
            if added >= args.jobs and pending == 0:
                break
            if child.poll() is not None:
                raise RuntimeError(f"the worker exited: {child.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
            if added < args.jobs and counts["waiting"] < args.backlog:
                size = min(CHUNK, args.jobs - added)
                await queue.add_bulk([{"task_id": TASK}] * size)
                added += size
            else:
                await asyncio.sleep(0.05)
        if readings[-1][0] != f"{args.jobs:,} jobs":
            readings.append((f"{args.jobs:,} jobs", await sizes(conn)))
        await asyncio.sleep(args.settle)  # the worker idles; its scheduler purges, autovacuum may run
        readings.append((f"after {args.settle:.0f} s idle", await sizes(conn)))
    await backend.close()
    return readings


def get(address: str) -> str:
    """A blocking GET: the scrape is timed alone, nothing else runs meanwhile."""
    with urllib.request.urlopen(address, timeout=5) as response:
        return str(response.read().decode())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def scrape(args: argparse.Namespace) -> dict[str, float]:
    backend = PostgresBackend(args.postgres, schema=SCHEMA)
    queue = Queue("scrape", backend=backend)
    for start in range(0, args.waiting, CHUNK):
        await queue.add_bulk([{"task_id": TASK}] * min(CHUNK, args.waiting - start))
    stats_ms = []
    for _ in range(args.scrapes):
        started = time.perf_counter()
        await backend.stats("scrape", time.time())
        stats_ms.append((time.perf_counter() - started) * 1000)
    port = free_port()
    exporter = [sys.executable, "-m", "asyncmq", "exporter", "--backend", url_with_schema(args.postgres)]
    exporter += ["--port", str(port)]
    scrapes_ms = []
    with process(exporter):
        address = f"http://127.0.0.1:{port}/metrics"
        for _ in range(100):  # until it serves
            try:
                get(address)
                break
            except OSError:
                await asyncio.sleep(0.1)
        for _ in range(args.scrapes):
            started = time.perf_counter()
            body = get(address)
            scrapes_ms.append((time.perf_counter() - started) * 1000)
        series = 'asyncmq_queue_jobs{queue="scrape",state="waiting"} '
        [line] = [line for line in body.splitlines() if line.startswith(series)]
        assert float(line.removeprefix(series)) == args.waiting, line
    await backend.close()
    stats_ms.sort()
    scrapes_ms.sort()
    return {
        "stats p50": statistics.median(stats_ms),
        "stats max": stats_ms[-1],
        "scrape p50": statistics.median(scrapes_ms),
        "scrape p95": percentile(scrapes_ms, 0.95),
        "scrape max": scrapes_ms[-1],
    }


def table(readings: list[tuple[str, dict[str, float]]]) -> str:
    heads = list(readings[0][1])
    lines = [
        "| after | " + " | ".join(f"{h} (MB)" if h != "dead rows" else h for h in heads) + " |",
        "| --- | " + " | ".join("---:" for _ in heads) + " |",
    ]
    for label, found in readings:
        cells = [f"{found[h]:,.0f}" if h == "dead rows" else f"{found[h]:,.2f}" for h in heads]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


async def main() -> None:
    args = options()
    conn = await asyncpg.connect(args.postgres)
    try:
        version = await conn.fetchval("SHOW server_version")
        autovacuum = await conn.fetchval("SHOW autovacuum")
        await drop_schema(conn)
        print(f"PostgreSQL {version}, autovacuum={autovacuum}\n")
        if args.jobs:
            print(table(await churn(args, conn)))
            await drop_schema(conn)
        if args.waiting:
            figures = await scrape(args)
            print(f"\n{args.waiting:,} jobs waiting in one queue, {args.scrapes} scrapes:\n")
            print(" | ".join(f"{name}: {value:.1f} ms" for name, value in figures.items()))
    finally:
        await drop_schema(conn)
        await conn.close()


if __name__ == "__main__":
    asyncio.run(main())
