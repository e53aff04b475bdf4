"""Peer comparison: this repository's asyncmq against other Python job queues on the same Redis,
or with `--postgres` on the same PostgreSQL.

    .venv/bin/python benchmarks/peers/run.py [--jobs N] [--repeat R] [--only NAME ...]
    .venv/bin/python benchmarks/peers/run.py --postgres postgresql://postgres@127.0.0.1:5432/asyncmq_bench

Each peer runs its `bench_<name>.py` in a virtual environment of its own under `.bench/venvs/<name>`,
made here on first use from `requirements/<name>.txt` (the pinned versions) and remade when that file
changes; the peers marked `local` (asyncmq, and the bare asyncpg loop) run in this interpreter (the
repository's own venv). Peers run one at a time, never in parallel, each repeat going through all of
them in turn. Every script prints one JSON line (see `_common.run` for the workload); this prints the
medians as a markdown table with each figure's ratio to the reference's in the same run: asyncmq on
Redis, or asyncmq_postgres with `--postgres`. On PostgreSQL, Redis still keeps the benchmark's own
bookkeeping (marks and latencies), exactly as on Redis.
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
POSTGRES_REFERENCE = "asyncmq_postgres"


@dataclass(frozen=True)
class Peer:
    """A system under test; `max_jobs` caps --jobs for slow peers, so a round stays within minutes;
    a `local` one runs in this interpreter (the repository's venv) rather than in a venv of its own."""

    max_jobs: int | None = None
    extra: list[str] = field(default_factory=list)
    local: bool = False


PEERS: dict[str, Peer] = {  # on Redis
    REFERENCE: Peer(local=True),
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

POSTGRES_PEERS: dict[str, Peer] = {  # with --postgres
    POSTGRES_REFERENCE: Peer(local=True),
    "pgqueuer": Peer(),
    "procrastinate": Peer(max_jobs=5_000),
    # Not a product: the ceiling of one Python process on this PostgreSQL (see its docstring).
    "asyncpg_loop": Peer(local=True),
}

FIGURES = [  # (key, heading); each ratio is the peer's figure over the reference's, "x" for times
    ("process", "no-op processed, jobs/s"),
    ("enqueue_fastest", "enqueue, fastest way, jobs/s"),
    ("enqueue_one_by_one", "enqueue one at a time, jobs/s"),
    ("latency_p50_ms", "latency p50, ms"),
    ("latency_p99_ms", "latency p99, ms"),
]


def python_for(name: str, peer: Peer) -> Path:
    """The peer's interpreter, its venv made or remade if its pinned requirements changed."""
    if peer.local:
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


def run_peer(name: str, peer: Peer, args: argparse.Namespace, timeout_s: float) -> dict[str, Any]:
    jobs = min(args.jobs, peer.max_jobs or args.jobs)
    command = [
        str(python_for(name, peer)),
        str(HERE / f"bench_{name}.py"),
        "--redis",
        args.redis,
        "--jobs",
        str(jobs),
        "--one-by-one",
        str(min(2_000, jobs // 4)),
        *(["--postgres", args.postgres] if args.postgres else []),
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


def table(results: dict[str, list[dict[str, Any]]], reference_name: str) -> str:
    medians: dict[str, dict[str, float]] = {}
    for name, rounds in results.items():
        good = [r for r in rounds if "error" not in r]
        if good:
            medians[name] = {key: statistics.median(r[key] for r in good) for key, _ in FIGURES}
    reference = medians.get(reference_name)
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
            if reference and name != reference_name:
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
        "--only",
        nargs="+",
        choices=sorted(PEERS | POSTGRES_PEERS),
        help="these systems (the reference, asyncmq or asyncmq_postgres, is always run)",
    )
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/9", help="a database of its own: flushed")
    parser.add_argument(
        "--postgres",
        metavar="URL",
        help="compare the PostgreSQL peers instead, in this database (created if missing; each peer "
        "drops and recreates its own tables, most in a database of their own next to it)",
    )
    parser.add_argument("--timeout", type=float, default=600, help="seconds per system per round")
    args = parser.parse_args()
    peers, reference = (POSTGRES_PEERS, POSTGRES_REFERENCE) if args.postgres else (PEERS, REFERENCE)
    if args.only and (others := sorted(set(args.only) - set(peers))):
        where = "PostgreSQL (--postgres)" if args.postgres else "Redis (no --postgres)"
        parser.error(f"not among the {where} systems: {', '.join(others)}")
    names = [reference, *(n for n in peers if n != reference and (not args.only or n in args.only))]
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for round_number in range(1, args.repeat + 1):
        for name in names:
            result = run_peer(name, peers[name], args, args.timeout)
            results[name].append(result)
            summary = result.get("error") or " ".join(
                f"{key}={result[key]:,.1f}" for key, _ in FIGURES if result.get(key) is not None
            )
            print(f"round {round_number}/{args.repeat} {name}: {summary}", file=sys.stderr, flush=True)
    print(table(results, reference))
    for name, rounds in results.items():
        for error in {r["error"] for r in rounds if "error" in r}:
            print(f"\n{name} failed: {error}")


if __name__ == "__main__":
    main()
