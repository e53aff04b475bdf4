"""Two versions of asyncmq side by side: `asyncmq bench` from each source tree in turn, in
one run, so a change is judged against its parent on the same machine in the same state.

    git worktree add /tmp/asyncmq-before HEAD~5
    .venv/bin/python benchmarks/compare_trees.py --before /tmp/asyncmq-before --rounds 5 \\
        --backend memory:// --backend redis://127.0.0.1:6379/0 --workload noop --workload small

Each round runs every (backend, workload) once per tree, the trees' order alternating by
round; a figure is the median over rounds, and the ratio after/before is the median of the
rounds' paired ratios (this machine's speed drifts between rounds, not within a pair).

A backend URL may hold `{tree}`, replaced by `before` or `after`, so that each version keeps
its own PostgreSQL schema or MongoDB database: an older tree refuses a schema migrated past
what it knows.

    --backend 'postgresql://postgres@127.0.0.1:5432/test?schema=bench_{tree}'
    --backend 'mongodb://127.0.0.1:27017/bench_{tree}?directConnection=true'
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: (key in `asyncmq bench --json`, title, factor to the title's unit)
FIGURES = (
    ("enqueue_one_by_one_jobs_per_s", "enqueue one by one (jobs/s)", 1),
    ("enqueue_bulk_jobs_per_s", "bulk enqueue (jobs/s)", 1),
    ("process_jobs_per_s", "process (jobs/s)", 1),
    ("latency_p99_ms", "latency p99 (ms)", 1),
    ("worker_cpu_s_per_1000_jobs", "worker CPU (µs/job)", 1000),
    ("round_trips_per_job", "backend round trips per job", 1),
)


def bench_once(
    tree_name: str, tree: Path, backend: str, workload: str, jobs: int, out: Path
) -> dict[str, float]:
    """One `asyncmq bench` round of `tree`'s code; its median figures by key."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    url = backend.replace("{tree}", tree_name)
    command = [sys.executable, "-m", "asyncmq", "bench", "--backend", url, "--workload", workload]
    command += ["--jobs", str(jobs), "--repeat", "1", "--json", str(out)]
    subprocess.run(command, env=env, cwd=tree, check=True, capture_output=True)
    result = json.loads(out.read_text())["results"][workload]
    return {key: float(result[key]["median"]) * factor for key, _, factor in FIGURES if key in result}


def _shown(value: float) -> str:
    """Two decimals, or four for a figure below 1 (round trips per job)."""
    return f"{value:.4f}" if abs(value) < 1 else f"{value:,.2f}"


def main() -> None:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("--before", type=Path, required=True, help="source tree of the earlier version")
    parser.add_argument("--after", type=Path, default=ROOT, help="source tree of the later version")
    parser.add_argument("--backend", action="append", default=[])
    parser.add_argument("--workload", action="append", default=[])
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    trees = {"before": args.before.resolve(), "after": args.after.resolve()}
    cases = [(b, w) for b in args.backend or ["memory://"] for w in args.workload or ["noop"]]
    runs: dict[tuple[str, str, str], list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for round_no in range(args.rounds):
            order = ["before", "after"] if round_no % 2 == 0 else ["after", "before"]
            for backend, workload in cases:
                for name in order:
                    out = Path(scratch) / f"{name}.json"
                    figures = bench_once(name, trees[name], backend, workload, args.jobs, out)
                    runs.setdefault((name, backend, workload), []).append(figures)
            print(f"round {round_no + 1}/{args.rounds} done", file=sys.stderr)
    print(f"| backend | workload | figure | before | after | after/before ({args.rounds} rounds) |")
    print("| --- | --- | --- | ---: | ---: | ---: |")
    for backend, workload in cases:
        before, after = runs[("before", backend, workload)], runs[("after", backend, workload)]
        for key, title, _ in FIGURES:
            if key not in before[0]:
                continue
            b = statistics.median(r[key] for r in before)
            a = statistics.median(r[key] for r in after)
            ratio = statistics.median(y[key] / x[key] for x, y in zip(before, after, strict=True) if x[key])
            print(f"| {backend} | {workload} | {title} | {_shown(b)} | {_shown(a)} | {ratio:.2f} |")


if __name__ == "__main__":
    main()
