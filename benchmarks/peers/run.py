"""Peer comparison: this repository's asyncmq against other Python job queues on the same Redis.

    .venv/bin/python benchmarks/peers/run.py [--jobs N] [--repeat R] [--only NAME ...]

Each peer runs its `bench_<name>.py` in a virtual environment of its own under `.bench/venvs/<name>`,
made here on first use from `requirements/<name>.txt` (the pinned versions) and remade when that file
changes; asyncmq runs `bench_asyncmq.py` in this interpreter (the repository's own venv). Peers run one
at a time, never in parallel, each repeat going through all of them in turn. Every script prints one
JSON line (see `_common.run` for the workload); this prints the medians as a markdown table with each
figure's ratio to asyncmq's in the same run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import venv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
VENVS = HERE.parent.parent / ".bench" / "venvs"
REFERENCE = "asyncmq"


@dataclass(frozen=True)
class Peer:
    """A system under test; `max_jobs` caps --jobs for slow peers, so a round stays within minutes."""

    max_jobs: int | None = None
    extra: list[str] = field(default_factory=list)


PEERS: dict[str, Peer] = {
    REFERENCE: Peer(),
    "asyncmq_pypi": Peer(max_jobs=5_000),
    "arq": Peer(max_jobs=5_000),
    "saq": Peer(max_jobs=5_000),
    "taskiq": Peer(max_jobs=5_000),
    "dramatiq": Peer(max_jobs=5_000),
    "celery": Peer(max_jobs=5_000),
    # RQ runs one job at a time (~110 jobs/s here): 200 jobs/s would only measure its backlog,
    # so its latency is paced at 50 jobs/s.
    "rq": Peer(max_jobs=2_000, extra=["--rate", "50", "--latency-jobs", "500"]),
}

FIGURES = [  # (key, heading); each ratio is the peer's figure over asyncmq's, "x" for times
    ("process", "no-op processed, jobs/s"),
    ("enqueue_fastest", "enqueue, fastest way, jobs/s"),
    ("enqueue_one_by_one", "enqueue one at a time, jobs/s"),
    ("latency_p50_ms", "latency p50, ms"),
    ("latency_p99_ms", "latency p99, ms"),
]


def python_for(name: str) -> Path:
    """The peer's interpreter, its venv made or remade if its pinned requirements changed."""
    if name == REFERENCE:
        return Path(sys.executable)
    requirements = HERE / "requirements" / f"{name}.txt"
    home = VENVS / name
    marker = home / "bench-requirements.txt"
    python = home / "bin" / "python"
    if not (marker.exists() and marker.read_text() == requirements.read_text()):
        print(f"installing {name} into {home}", file=sys.stderr)
        venv.create(home, with_pip=True, clear=True)
        subprocess.run([python, "-m", "pip", "install", "-q", "-r", requirements], check=True)
        marker.write_text(requirements.read_text())
    return python


def run_peer(name: str, args: argparse.Namespace, timeout_s: float) -> dict[str, Any]:
    peer = PEERS[name]
    jobs = min(args.jobs, peer.max_jobs or args.jobs)
    command = [
        str(python_for(name)),
        str(HERE / f"bench_{name}.py"),
        "--redis",
        args.redis,
        "--jobs",
        str(jobs),
        "--one-by-one",
        str(min(2_000, jobs // 4)),
        *peer.extra,
    ]
    process = subprocess.Popen(command, cwd=HERE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.terminate()  # the script stops its worker on SIGTERM
        out, err = process.communicate(timeout=60)
        return {"error": f"timed out after {timeout_s:.0f}s; {err.strip()[-500:]}"}
    if process.returncode != 0:
        return {"error": f"exit {process.returncode}: {err.strip()[-800:]}"}
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    result["enqueue_fastest"] = max(filter(None, [result["enqueue_bulk"], result["enqueue_one_by_one"]]))
    result["latency_rate"] = (
        int(peer.extra[peer.extra.index("--rate") + 1]) if "--rate" in peer.extra else 200
    )
    return result


def table(results: dict[str, list[dict[str, Any]]]) -> str:
    medians: dict[str, dict[str, float]] = {}
    for name, rounds in results.items():
        good = [r for r in rounds if "error" not in r]
        if good:
            medians[name] = {key: statistics.median(r[key] for r in good) for key, _ in FIGURES}
    reference = medians.get(REFERENCE)
    head = ["system", "version", "jobs", *(h for _, h in FIGURES), "bulk call", "notes"]
    lines = [
        "| " + " | ".join(head) + " |",
        "| " + " | ".join(["---"] * 3 + ["---:"] * len(FIGURES) + ["---"] * 2) + " |",
    ]
    for name, rounds in results.items():
        if name not in medians:
            continue
        last = next(r for r in rounds if "error" not in r)
        cells = [last["system"], last["version"], f"{last['jobs']:,}"]
        for key, _ in FIGURES:
            value = medians[name][key]
            text = f"{value:,.0f}" if value >= 100 else f"{value:,.2f}"
            if reference and name != REFERENCE:
                ratio = value / reference[key]
                text += f" ({ratio:.3g}x)"
            cells.append(text)
        note = last["notes"]
        if last["latency_rate"] != 200:
            note = f"{note}; latency at {last['latency_rate']} jobs/s".lstrip("; ")
        cells += [last["bulk_method"], note]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--only", nargs="+", choices=sorted(PEERS), help="these systems (asyncmq is always run)"
    )
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/9", help="a database of its own: flushed")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per system per round")
    args = parser.parse_args()
    names = [REFERENCE, *(n for n in PEERS if n != REFERENCE and (not args.only or n in args.only))]
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for round_number in range(1, args.repeat + 1):
        for name in names:
            result = run_peer(name, args, args.timeout)
            results[name].append(result)
            summary = result.get("error") or " ".join(
                f"{key}={result[key]:,.1f}" for key, _ in FIGURES if result.get(key) is not None
            )
            print(f"round {round_number}/{args.repeat} {name}: {summary}", file=sys.stderr, flush=True)
    print(table(results))
    for name, rounds in results.items():
        for error in {r["error"] for r in rounds if "error" in r}:
            print(f"\n{name} failed: {error}")


if __name__ == "__main__":
    main()
