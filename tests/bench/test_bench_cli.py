"""`asyncmq bench` end to end through the CLI: the table, the JSON, the plot, the profile,
on the in-memory backend and on Redis, and the errors for options that cannot work."""

from __future__ import annotations

import asyncio
import itertools
import os
import pstats
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest

from asyncmq.backends.base import redacted_url
from asyncmq.bench.measure import METRICS, percentile
from tests.cli.helpers import invoke, table_rows

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
REDIS_URL = os.environ.get("ASYNCMQ_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
#: Small enough to keep each run near a second, large enough for every percentile.
SMALL_RUN = ("--jobs", "200", "--repeat", "1", "--rate", "2000")


def _figures(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = orjson.loads(path.read_bytes())
    return document


def _assert_complete(document: dict[str, Any], workloads: set[str], backend: str) -> None:
    assert set(document["results"]) == workloads
    for figures in document["results"].values():
        assert {"process_jobs_per_s", "latency_p99_ms", "worker_cpu_s_per_1000_jobs"} <= set(figures)
        assert set(figures) <= set(METRICS)
        for spread in figures.values():
            assert set(spread) == {"median", "min", "max"}
            assert spread["min"] <= spread["median"] <= spread["max"]
    machine = document["machine"]
    assert {"platform", "cpu_count", "python", "asyncmq", "backend"} <= set(machine)
    assert machine["backend"] == redacted_url(backend)
    words = document["command"].split()
    assert words[:3] == ["asyncmq", "bench", "--backend"]
    assert {"--jobs 200", "--repeat 1"} <= {" ".join(pair) for pair in itertools.pairwise(words)}


def test_bench_on_memory_prints_a_table_and_writes_json_and_a_png(tmp_path: Path) -> None:
    report, chart = tmp_path / "bench.json", tmp_path / "bench.png"
    args = ("bench", "--backend", "memory://", *SMALL_RUN, "--json", str(report), "--plot", str(chart))
    result = invoke(*args, "--workload", "noop", "--workload", "small")
    assert result.exit_code == 0, result.output
    rows = table_rows(result.output)
    assert rows[0] == ["workload", "figure", "median", "min-max"]
    assert {row[0] for row in rows[1:]} == {"noop", "small"}
    assert "[4/8] noop: latency" in result.output  # plain progress lines off a terminal
    _assert_complete(_figures(report), {"noop", "small"}, "memory://")
    assert chart.read_bytes().startswith(PNG_SIGNATURE)


def test_bench_profile_writes_a_loadable_pstats_file_and_collapsed_stacks(tmp_path: Path) -> None:
    result = invoke("bench", *SMALL_RUN, "--profile", str(tmp_path / "profile"))
    assert result.exit_code == 0, result.output
    stats = pstats.Stats(str(tmp_path / "profile" / "worker.prof"))
    assert any(function[2] == "_execute" for function in stats.stats)  # type: ignore[attr-defined]
    stacks = (tmp_path / "profile" / "worker.collapsed").read_text().splitlines()
    assert all(line.rsplit(" ", 1)[1].isdigit() for line in stacks)


async def _keys_left(prefix: str) -> list[bytes]:
    from redis.asyncio import Redis

    client = Redis.from_url(REDIS_URL)
    try:
        keys: list[bytes] = [key async for key in client.scan_iter(match=f"asyncmq:{{{prefix}-*")]
        if keys:
            await client.delete(*keys)
        return keys
    finally:
        await client.aclose()


async def _some_stored(prefix: str) -> bool:
    """Whether the bench's queue holds keys yet, asked for up to 10 s."""
    from redis.asyncio import Redis

    client = Redis.from_url(REDIS_URL)
    try:
        for _ in range(200):
            if [key async for key in client.scan_iter(match=f"asyncmq:{{{prefix}-*", count=1000)]:
                return True
            await asyncio.sleep(0.05)
        return False
    finally:
        await client.aclose()


def _redis_or_skip() -> None:
    from redis import Redis
    from redis.exceptions import ConnectionError as RedisConnectionError

    try:
        Redis.from_url(REDIS_URL).ping()
    except (RedisConnectionError, OSError) as exc:
        if os.environ.get("CI"):
            pytest.fail(f"no Redis at {REDIS_URL}: {exc}")
        pytest.skip(f"no Redis at {REDIS_URL}: {exc}")


@pytest.mark.slow
@pytest.mark.parametrize("processes", [(), ("--processes", "2")], ids=["in-process", "two-processes"])
def test_bench_on_redis_writes_every_figure_and_leaves_no_key_behind(
    tmp_path: Path, processes: tuple[str, ...]
) -> None:
    _redis_or_skip()
    prefix, report = f"test-bench-{uuid.uuid4().hex[:8]}", tmp_path / "bench.json"
    try:
        args = ("bench", "--backend", REDIS_URL, "--queue", prefix, *SMALL_RUN, *processes)
        result = invoke(*args, "--json", str(report))
        assert result.exit_code == 0, result.output
        workers = "2 worker processes at concurrency 10 each" if processes else "1 worker in this process"
        assert workers in result.output.splitlines()[0]
        _assert_complete(_figures(report), {"noop"}, REDIS_URL)
    finally:
        left = asyncio.run(_keys_left(prefix))
    assert left == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--workload", "nope"), "'nope' is not one of"),
        (("--jobs", "0"), "0 is not in the range x>=1"),
        (("--backend", "nope://x"), "unsupported backend URL"),
        (("--processes", "2"), "worker processes need a shared backend"),
        (("--backend", REDIS_URL, "--processes", "2", "--profile", "p"), "attach py-spy"),
        (("--queue", "bad name"), "invalid queue name"),
    ],
)
def test_bench_refuses_options_that_cannot_work_with_a_clear_message(
    args: tuple[str, ...], message: str
) -> None:
    result = invoke("bench", *args)
    assert result.exit_code == 2
    assert message in result.output


def test_bench_plot_without_matplotlib_names_the_extra_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    result = invoke("bench", "--plot", "chart.png")
    assert result.exit_code == 2
    assert "pip install 'asyncmq[bench]'" in result.output


def test_reports_hide_the_backend_password() -> None:
    assert redacted_url("redis://user:secret@host:6379/0") == "redis://user:***@host:6379/0"
    assert redacted_url("memory://") == "memory://"


def test_percentiles_are_nearest_rank_values_from_the_sample() -> None:
    ordered = [float(value) for value in range(1, 101)]
    assert [percentile(ordered, p) for p in (0.5, 0.95, 0.99)] == [50.0, 95.0, 99.0]
    assert percentile([7.0], 0.99) == 7.0
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 0.5) == 3.0


def test_the_cli_offers_exactly_the_workloads_the_library_defines() -> None:
    from asyncmq.bench.workloads import WORKLOADS
    from asyncmq.cli.bench import _WORKLOAD_NAMES

    assert tuple(WORKLOADS) == _WORKLOAD_NAMES


@pytest.mark.slow
def test_bench_stopped_by_sigterm_removes_its_queue_and_says_aborted() -> None:
    _redis_or_skip()
    prefix = f"test-bench-{uuid.uuid4().hex[:8]}"
    command = [sys.executable, "-m", "asyncmq", "bench", "--backend", REDIS_URL, "--queue", prefix]
    command += ["--jobs", "1000000", "--repeat", "1"]  # far more than it does before the signal
    bench = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert bench.stdout is not None
        for line in bench.stdout:  # its progress: storing jobs one by one has begun
            if "enqueue one by one" in line:
                break
        assert asyncio.run(_some_stored(prefix)), "the bench stored no job to leave behind"
        bench.send_signal(signal.SIGTERM)
        _, err = bench.communicate(timeout=60)
    finally:
        if bench.poll() is None:
            bench.kill()
            bench.wait()
        left = asyncio.run(_keys_left(prefix))
    assert bench.returncode == 1, err
    assert err.strip().endswith("Aborted!"), err
    assert left == []
