"""The demo: its plan, its score keeping, and `asyncmq demo` run in-process and as a program."""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from asyncmq.core.event import Event
from asyncmq.demo import DemoConfig, DemoStats, job_mix, percentile, plan_jobs, run_demo
from tests.cli.helpers import asyncmq_command, invoke

ROOT = Path(__file__).resolve().parents[2]
_STAY = re.compile(
    r"^The demo is done; metrics stay on (http://127\.0\.0\.1:\d+/metrics) until Ctrl-C(.*)\.$"
)


def _expected(jobs: int, seed: int) -> dict[str, int]:
    """What the plan says must happen, independent of timing."""
    plan = plan_jobs(jobs, random.Random(seed))
    failures = [job.args[1] for job in plan if job.kind == "flaky"]
    mix = job_mix(jobs)
    return {
        "produced": jobs,
        "completed": jobs - mix["dead"],
        "completed_after_retry": sum(1 for n in failures if n),
        "failed": mix["dead"],
        "expired": 0,
        "cancelled": 0,
        "unsettled": 0,
        "retries": 2 * mix["dead"] + sum(failures),
        "progress_updates": 4 * mix["progress"],
    }


def test_the_job_mix_holds_every_kind_and_adds_up() -> None:
    assert job_mix(60) == {"flaky": 6, "dead": 3, "delayed": 6, "sync": 5, "progress": 4, "email": 36}
    assert job_mix(300) == {"flaky": 30, "dead": 15, "delayed": 30, "sync": 24, "progress": 21, "email": 180}
    assert job_mix(3) == {"flaky": 1, "dead": 1, "delayed": 1, "sync": 0, "progress": 0, "email": 0}


def test_the_same_seed_plans_the_same_jobs() -> None:
    first = [(job.kind, job.args, job.delay_s) for job in plan_jobs(50, random.Random(5))]
    again = [(job.kind, job.args, job.delay_s) for job in plan_jobs(50, random.Random(5))]
    assert first == again
    assert sorted({kind for kind, _, _ in first}) == ["dead", "delayed", "email", "flaky", "progress", "sync"]


def test_percentile_uses_the_nearest_rank() -> None:
    values = [float(n) for n in range(100, 0, -1)]
    assert [percentile(values, pct) for pct in (50, 95, 99, 100)] == [50.0, 95.0, 99.0, 100.0]
    assert percentile([0.25], 99) == 0.25
    assert percentile([], 50) is None


def _payload(job_id: str, attempt: int = 1, **extra: object) -> dict[str, object]:
    stamps = {"created_at": 100.0, "finished_at": 100.5}
    return {"id": job_id, "task": "demo.send_email", "attempt": attempt, "timestamps": stamps, **extra}


def test_the_score_counts_outcomes_retries_repeats_and_latency_from_events() -> None:
    stats = DemoStats(planned=3, produced=3)
    stats.record(Event.JOB_RETRIED, _payload("a", error={"type": "ConnectionError", "message": "down"}))
    stats.record(Event.JOB_COMPLETED, _payload("a", attempt=2))
    stats.record(Event.JOB_COMPLETED, _payload("a", attempt=2))  # told twice, counted once
    stats.record(Event.JOB_PROGRESS, _payload("b", progress={"step": 1}))
    stats.record(Event.JOB_FAILED, _payload("b", error={"type": "LookupError", "message": "no box"}))
    stats.record(Event.JOB_COMPLETED, _payload("repeat:k:1", repeat_key="k"))
    assert not stats.all_settled
    stats.record(Event.JOB_EXPIRED, _payload("c"))
    assert stats.all_settled
    summary = stats.summary()
    assert {
        k: summary[k] for k in ("completed", "completed_after_retry", "failed", "expired", "unsettled")
    } == {
        "completed": 1,
        "completed_after_retry": 1,
        "failed": 1,
        "expired": 1,
        "unsettled": 0,
    }
    assert (stats.retries, stats.progress_updates, stats.repeat_runs, stats.latencies_s) == (1, 1, 1, [0.5])
    assert [event.detail for event in stats.recent][:3] == ["ConnectionError: down", "attempt 2", "attempt 2"]
    assert stats.recent[3].detail == "progress {'step': 1}"


async def test_the_demo_settles_every_job_the_way_its_plan_says() -> None:
    ticks: list[int] = []
    stats = await run_demo(DemoConfig(jobs=40, seed=7, tick_s=0.5), lambda s: ticks.append(len(s.settled)))
    summary = stats.summary()
    assert {key: summary[key] for key in _expected(40, 7)} == _expected(40, 7)
    assert stats.stop_reason == "all jobs settled"
    assert len(stats.latencies_s) == summary["completed"]
    assert ticks
    assert ticks == sorted(ticks)
    assert stats.counts["active"] <= 1  # at most the repeatable's current run


def _summary_counts(output: str) -> dict[str, int]:
    labels = {
        "completed": "completed",
        "failed (dead letter)": "failed",
        "expired": "expired",
        "cancelled": "cancelled",
        "unsettled": "unsettled",
        "retries": "retries",
        "progress updates": "progress_updates",
    }
    found = {}
    for line in output.splitlines():
        match = re.fullmatch(r"  ([a-z ()]+?)\s+(\d+)(?:  \((\d+) after a retry\))?", line)
        if match and match[1] in labels:
            found[labels[match[1]]] = int(match[2])
            if match[3] is not None:
                found["completed_after_retry"] = int(match[3])
    return found


def test_demo_without_a_terminal_prints_plain_progress_then_the_summary() -> None:
    result = invoke("demo", "--jobs", "30", "--seed", "3")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == (
        "asyncmq demo: 30 jobs on queue 'emails', concurrency 20, in-memory backend; "
        "stops when all have settled, or after 15 s"
    )
    assert re.fullmatch(r"\[  0\.\ds\] produced \d+/30 settled \d+ \| waiting \d+ .* jobs/s", lines[1])
    assert re.search(r"^Summary: 30 jobs in \d+\.\d s \(all jobs settled\)$", result.stdout, re.M)
    expected = _expected(30, 3)
    del expected["produced"]
    assert _summary_counts(result.stdout) == expected
    assert re.fullmatch(r"  latency p99 +\d+\.\d{3} s", lines[-2])


def test_demo_stops_at_its_duration_and_still_prints_the_summary() -> None:
    first_batch = [job.kind for job in plan_jobs(300, random.Random(5))[:25]]
    assert "delayed" in first_batch  # sent at once, due after at least 0.5 s: unsettled at 0.3 s
    result = invoke("demo", "--jobs", "300", "--seed", "5", "--duration", "0.3")
    assert result.exit_code == 0, result.output
    assert re.search(r"^Summary: \d+ jobs in 0\.\d s \(time limit reached\)$", result.stdout, re.M)
    assert _summary_counts(result.stdout)["unsettled"] >= first_batch.count("delayed")


def test_demo_metrics_port_without_the_observability_extra_fails_clearly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "asyncmq.observability", None)  # as if the extra were missing
    result = invoke("demo", "--metrics-port", "9464")
    assert result.exit_code == 3  # a missing extra is a configuration error
    assert "Error: --metrics-port needs the observability extra: pip install 'asyncmq[observability]'" in (
        result.output
    )


@pytest.mark.slow
def test_the_demo_program_with_60_jobs_exits_0_after_its_summary() -> None:
    done = subprocess.run(
        [*asyncmq_command(), "demo", "--jobs", "60", "--seed", "11"],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert done.returncode == 0, done.stderr
    assert re.search(r"^Summary: 60 jobs in \d+\.\d s \(all jobs settled\)$", done.stdout, re.M)
    expected = _expected(60, 11)
    del expected["produced"]
    assert _summary_counts(done.stdout) == expected
    assert done.stderr == ""


def _demo_process(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*asyncmq_command(), "demo", *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _lines_until_served(proc: subprocess.Popen[str], deadline_s: float = 20) -> list[str]:
    """stdout up to the line that says the metrics stay (a bound, not a timing assertion)."""
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if _STAY.match(lines[-1]):
            return lines
    raise AssertionError(f"the demo never said its metrics stay; got {lines}")


@pytest.mark.slow
@pytest.mark.timeout(40)
def test_the_demo_keeps_serving_metrics_after_its_summary_until_ctrl_c_then_exits_0() -> None:
    proc = _demo_process("--jobs", "30", "--seed", "3", "--metrics-port", "0")
    try:
        lines = _lines_until_served(proc)
        summary = r"Summary: 30 jobs in \d+\.\d s \(all jobs settled\)"
        assert any(re.fullmatch(summary, line) for line in lines)
        stay = _STAY.match(lines[-1])
        assert stay is not None
        assert stay[2] == ""  # no --duration: only Ctrl-C ends it
        assert proc.poll() is None  # still running after its summary
        with urllib.request.urlopen(stay[1], timeout=10) as response:
            body = response.read().decode()
        assert re.search(r'^asyncmq_jobs_completed_total\{[^}]*queue="emails"[^}]*\} [1-9]', body, re.M)
        proc.send_signal(signal.SIGINT)
        rest, stderr = proc.communicate(timeout=15)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr
    assert rest.splitlines() == ["Ctrl-C: metrics no longer served; the demo is over."]
    assert "Traceback" not in stderr


@pytest.mark.slow
@pytest.mark.timeout(40)
def test_with_a_duration_the_demo_serves_metrics_until_it_ends_then_exits_0_by_itself() -> None:
    proc = _demo_process("--jobs", "30", "--seed", "3", "--metrics-port", "0", "--duration", "6")
    try:
        lines = _lines_until_served(proc)
        stay = _STAY.match(lines[-1])
        assert stay is not None
        assert stay[2] == " or 6 s after the start (--duration)"
        rest, stderr = proc.communicate(timeout=15)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr
    assert rest.splitlines() == ["--duration 6 s reached: metrics no longer served; the demo is over."]
