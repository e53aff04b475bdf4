"""Soak: a long stream of jobs through one backend, watching the workers for leaks.

    .venv/bin/python benchmarks/soak.py --backend redis://127.0.0.1:6379/0 --jobs 1000000 \\
        --json soak.json --markdown soak.md

A producer here adds `--jobs` jobs (`benchmarks.tasks.nap`, `--pause-ms` each) in bulk,
keeping at most `--backlog` waiting, while `--workers` worker processes (this script, in child
mode) run them with metrics on and tracing sampled at `--trace-ratio` (1%), exporting spans
over OTLP/HTTP to a sink this script runs. Every `--every` seconds each worker writes its
resident memory (RSS), open file descriptors and asyncio task count, and this script scrapes
each worker's `/metrics`. At the end, the counters must be exact: as many completed as jobs
added, as many started (no job ran twice), none failed, retried or stalled, and nothing left in
the queue. Output: JSON (every sample), a markdown summary and, with `--plot`, a PNG of the
samples; the exit status is 1 if a check failed. An in-memory queue lives in one process, so
with `memory://` one worker runs in this process, beside the producer (its samples count the
producer too).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from asyncmq.backends import backend_from_url  # noqa: E402
from asyncmq.backends.base import BaseBackend, redacted_url  # noqa: E402
from asyncmq.queues import Queue  # noqa: E402
from benchmarks.tasks import nap  # noqa: E402

COUNTERS = ("enqueued", "started", "completed", "failed", "retried", "stalled")


# -- a worker process -------------------------------------------------------------------
async def _sample(path: Path, every_s: float) -> None:
    page = resource.getpagesize()
    while True:
        rss = int(Path("/proc/self/statm").read_text().split()[1]) * page  # noqa: ASYNC240 (procfs)
        line = {
            "t": time.time(),
            "rss_mb": round(rss / 2**20, 2),
            "fds": len(os.listdir("/proc/self/fd")),
            "tasks": len(asyncio.all_tasks()),
        }
        with path.open("a") as out:
            out.write(json.dumps(line) + "\n")
        await asyncio.sleep(every_s)


async def _serve_worker(
    backend: BaseBackend, args: argparse.Namespace, port: int, samples: Path, sink: str
) -> None:
    """One worker on `backend` until stopped: metrics served on `port`, 1% of jobs traced to the sink."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    from asyncmq.observability import instrument, serve_metrics

    provider = TracerProvider(sampler=ParentBased(TraceIdRatioBased(args.trace_ratio)))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{sink}/v1/traces")))
    instrument(tracer_provider=provider, backends=[backend])
    server = serve_metrics(backend, port=port)
    sampler = asyncio.create_task(_sample(samples, args.every))
    try:
        await Queue(args.queue, backend=backend, concurrency=args.concurrency).worker().run()
    finally:
        sampler.cancel()
        server.close()
        provider.shutdown()


async def _child(args: argparse.Namespace) -> None:
    """A worker process."""
    backend = backend_from_url(args.backend)
    try:
        await _serve_worker(backend, args, args.metrics_port, Path(args.samples), args.sink)
    finally:
        await backend.close()


# -- the trace sink -----------------------------------------------------------------------
class _Sink(HTTPServer):
    """Takes OTLP/HTTP exports and counts them (what a collector costs is not measured)."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _SinkHandler)
        self.exports = 0
        self.bytes = 0


class _SinkHandler(BaseHTTPRequestHandler):
    server: _Sink

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        self.server.bytes += len(self.rfile.read(length))
        self.server.exports += 1
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


# -- the run ------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _scrape(port: int, queue: str) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    totals = dict.fromkeys(COUNTERS, 0.0)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name = sample.name.removeprefix("asyncmq_jobs_").removesuffix("_total")
            if name in totals and sample.name.endswith("_total") and sample.labels.get("queue") == queue:
                totals[name] += sample.value
    return totals


def _scrape_all(ports: list[int], queue: str) -> dict[str, float]:
    summed = dict.fromkeys(COUNTERS, 0.0)
    for port in ports:
        for name, value in _scrape(port, queue).items():
            summed[name] += value
    return summed


def _spawn(args: argparse.Namespace, port: int, samples: Path, sink: str) -> subprocess.Popen[bytes]:
    command = [
        sys.executable, __file__, "--child", "--backend", args.backend, "--queue", args.queue,
        "--concurrency", str(args.concurrency), "--metrics-port", str(port), "--samples", str(samples),
        "--sink", sink, "--trace-ratio", str(args.trace_ratio), "--every", str(args.every),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL)


async def _produce(queue: Queue, args: argparse.Namespace, ports: list[int]) -> list[dict[str, Any]]:
    """Add the jobs, keeping the backlog bounded; scrape the workers every `--every` s."""
    added, scrapes, next_scrape = 0, [], time.monotonic()
    started = time.monotonic()
    while True:
        waiting = (await queue.counts())["waiting"]
        if added < args.jobs and waiting < args.backlog:
            batch = min(5000, args.jobs - added, args.backlog - waiting)
            await queue.add_bulk([{"task_id": nap.name, "args": [args.pause_ms]}] * batch)
            added += batch
            continue
        if time.monotonic() >= next_scrape:
            totals = await asyncio.to_thread(_scrape_all, ports, args.queue)
            scrapes.append({"t": time.monotonic() - started, "added": added, **totals})
            if len(scrapes) % 10 == 1:
                done = int(totals["completed"])
                print(f"{scrapes[-1]['t']:8.0f}s added {added:>9} completed {done:>9}", flush=True)
            next_scrape += args.every
            if totals["completed"] >= args.jobs:
                return scrapes
        await asyncio.sleep(0.05)


def _samples(path: Path) -> list[dict[str, float]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _summary(series: list[dict[str, float]]) -> dict[str, float]:
    """Start (after the first 10% of the run, once warm), end and highest of each measure."""
    if not series:
        return {}
    warm = series[len(series) // 10]
    out: dict[str, float] = {}
    for key in ("rss_mb", "fds", "tasks"):
        out[f"{key}_warm"], out[f"{key}_end"] = warm[key], series[-1][key]
        out[f"{key}_max"] = max(sample[key] for sample in series)
    return out


async def _run(args: argparse.Namespace) -> int:
    backend = backend_from_url(args.backend)
    await backend.connect()
    await backend.delete_queue(args.queue)
    queue = Queue(args.queue, backend=backend)
    sink = _Sink()
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    sink_url = f"http://127.0.0.1:{sink.server_address[1]}"
    directory = Path(args.json).with_suffix(".samples") if args.json else Path(f"/tmp/soak-{os.getpid()}")
    directory.mkdir(parents=True, exist_ok=True)
    if backend.name == "memory":
        args.workers = 1  # an in-memory queue lives in one process: the worker runs in this one
    ports = [_free_port() for _ in range(args.workers)]
    files = [directory / f"worker-{n}.jsonl" for n in range(args.workers)]
    for file in files:
        file.unlink(missing_ok=True)
    inline: asyncio.Task[None] | None = None
    children: list[subprocess.Popen[bytes]] = []
    if backend.name == "memory":
        inline = asyncio.create_task(_serve_worker(backend, args, ports[0], files[0], sink_url))
    else:
        children = [_spawn(args, port, file, sink_url) for port, file in zip(ports, files, strict=True)]
    started = time.monotonic()
    try:
        await _wait_for_endpoints(ports, children)
        scrapes = await _produce(queue, args, ports)
        elapsed = time.monotonic() - started
        final = await asyncio.to_thread(_scrape_all, ports, args.queue)
        counts = await queue.counts()
    finally:
        for child in children:
            child.send_signal(signal.SIGTERM)
        for child in children:
            child.wait(60)
        if inline is not None:
            inline.cancel()
            await asyncio.gather(inline, return_exceptions=True)
        await backend.delete_queue(args.queue)
        await backend.close()
        sink.shutdown()
    checks = {
        "completed equals jobs": final["completed"] == args.jobs,
        "started equals jobs (none ran twice)": final["started"] == args.jobs,
        "none failed, retried or stalled": final["failed"] == final["retried"] == final["stalled"] == 0,
        "nothing left in the queue": counts["waiting"] == counts["active"] == counts["delayed"] == 0,
    }
    workers = [{"samples": _samples(file), **_summary(_samples(file))} for file in files]
    report = {
        "backend": backend.name,
        "url": redacted_url(args.backend),
        "jobs": args.jobs,
        "workers": args.workers,
        "concurrency": args.concurrency,
        "pause_ms": args.pause_ms,
        "trace_ratio": args.trace_ratio,
        "seconds": round(elapsed, 1),
        "jobs_per_s": round(args.jobs / elapsed, 1),
        "counters": final,
        "counts": counts,
        "trace_exports": sink.exports,
        "checks": checks,
        "scrapes": scrapes,
        "worker_samples": workers,
    }
    _write(args, report)
    return 0 if all(checks.values()) else 1


def _write(args: argparse.Namespace, report: dict[str, Any]) -> None:
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    if args.plot:
        _plot(report, Path(args.plot))
    markdown = _markdown(report)
    if args.markdown:
        Path(args.markdown).write_text(markdown)
    print(markdown)


def _plot(report: dict[str, Any], path: Path) -> None:
    """Each worker's RSS, open fds and asyncio tasks against the time into the run: a leak is a
    line that keeps rising after warm-up, which the warm/end figures alone can hide."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display, no GUI toolkit
    import matplotlib.pyplot as pyplot

    figure, axes = pyplot.subplots(3, 1, sharex=True, figsize=(8, 7))
    for n, worker in enumerate(report["worker_samples"]):
        series = worker["samples"]
        if not series:
            continue
        times = [sample["t"] - series[0]["t"] for sample in series]
        for axis, key in zip(axes, ("rss_mb", "fds", "tasks"), strict=True):
            axis.plot(times, [sample[key] for sample in series], label=f"worker {n}")
    for axis, label in zip(axes, ("RSS (MB)", "open fds", "asyncio tasks"), strict=True):
        axis.set_ylabel(label)
        axis.set_ylim(bottom=0)
        axis.grid(alpha=0.3)
    axes[0].legend()
    axes[0].set_title(
        f"Soak: {report['jobs']:,} jobs on {report['backend']}, {report['jobs_per_s']:,} jobs/s"
    )
    axes[-1].set_xlabel("seconds into the run")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    pyplot.close(figure)


async def _wait_for_endpoints(ports: list[int], children: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + 60
    for port in ports:
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if any(child.poll() is not None for child in children) or time.monotonic() > deadline:
                    raise SystemExit("a worker process did not start") from None
                await asyncio.sleep(0.1)


def _markdown(report: dict[str, Any]) -> str:
    lines = [
        f"## Soak: {report['jobs']:,} jobs on {report['backend']}",
        "",
        f"{report['workers']} worker processes, concurrency {report['concurrency']}, jobs of "
        f"{report['pause_ms']} ms, metrics on, tracing sampled at {report['trace_ratio']:.0%} "
        f"({report['trace_exports']} OTLP exports): {report['seconds']} s, {report['jobs_per_s']:,} jobs/s.",
        "",
        "| worker | RSS MB (warm / end / max) | open fds (warm / end / max) "
        "| asyncio tasks (warm / end / max) |",
        "| --- | --- | --- | --- |",
    ]
    for n, worker in enumerate(report["worker_samples"]):
        cells = [
            f"{worker.get(f'{key}_warm')} / {worker.get(f'{key}_end')} / {worker.get(f'{key}_max')}"
            for key in ("rss_mb", "fds", "tasks")
        ]
        lines.append(f"| {n} | {' | '.join(cells)} |")
    counters = ", ".join(f"{name} {int(value):,}" for name, value in report["counters"].items())
    lines += ["", f"Counters: {counters}.", ""]
    lines += [f"- {'ok' if ok else 'FAILED'}: {check}" for check, ok in report["checks"].items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", required=True)
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--pause-ms", type=float, default=1.0, help="what each job sleeps")
    parser.add_argument("--backlog", type=int, default=20_000, help="most jobs kept waiting")
    parser.add_argument("--trace-ratio", type=float, default=0.01)
    parser.add_argument("--every", type=float, default=1.0, help="seconds between samples")
    parser.add_argument("--queue", default="soak")
    parser.add_argument("--json")
    parser.add_argument("--markdown")
    parser.add_argument("--plot", help="a PNG of each worker's RSS, fds and tasks over time (matplotlib)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--metrics-port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--samples", help=argparse.SUPPRESS)
    parser.add_argument("--sink", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        asyncio.run(_child(args))
        return
    sys.exit(asyncio.run(_run(args)))


if __name__ == "__main__":
    main()
