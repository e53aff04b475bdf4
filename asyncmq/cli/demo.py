"""`asyncmq demo`: run `asyncmq.demo` with a live view on a terminal, plain lines elsewhere.

A terminal gets a rich live display (jobs per state, throughput, recent events); a pipe or
a CI log gets one plain progress line per second. Both end with the same summary; with
`--metrics-port`, the metrics stay served after it until Ctrl-C (or `--duration` ends).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import click

from asyncmq.cli.common import metrics_endpoint, metrics_port_option, run, stop_signals
from asyncmq.job import JobState

if TYPE_CHECKING:
    from rich.console import RenderableType

    from asyncmq.demo import DemoConfig, DemoStats

__all__ = ["demo", "plain_line", "render_live", "summary_lines"]

_STATES = tuple(state.value for state in JobState)
_JOB_LIMIT_S = 15.0  # how long the jobs may take without --duration


def plain_line(stats: DemoStats) -> str:
    counts = " ".join(f"{state} {stats.counts.get(state, 0)}" for state in _STATES[:5])
    return (
        f"[{stats.elapsed_s:5.1f}s] produced {stats.produced}/{stats.planned} "
        f"settled {len(stats.settled)} | {counts} | {stats.throughput(time.time()):.1f} jobs/s"
    )


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f} s"


def summary_lines(stats: DemoStats) -> list[str]:
    s = stats.summary()
    return [
        f"Summary: {s['produced']} jobs in {stats.elapsed_s:.1f} s ({stats.stop_reason})",
        f"  completed              {s['completed']:>6}  ({s['completed_after_retry']} after a retry)",
        f"  failed (dead letter)   {s['failed']:>6}",
        f"  expired                {s['expired']:>6}",
        f"  cancelled              {s['cancelled']:>6}",
        f"  unsettled              {s['unsettled']:>6}",
        f"  retries                {s['retries']:>6}",
        f"  repeatable runs        {s['repeatable_runs']:>6}",
        f"  progress updates       {s['progress_updates']:>6}",
        f"  throughput             {s['throughput_per_s']:>6.1f} jobs/s",
        f"  latency p50            {_seconds(s['latency_p50_s'])}",
        f"  latency p95            {_seconds(s['latency_p95_s'])}",
        f"  latency p99            {_seconds(s['latency_p99_s'])}",
        "  (latency: created -> finished, so delays and retry backoff count)",
    ]


def render_live(stats: DemoStats, config: DemoConfig) -> RenderableType:
    from rich.console import Group
    from rich.progress_bar import ProgressBar
    from rich.table import Table

    from asyncmq.demo import QUEUE

    now = time.time()
    head = Table.grid(padding=(0, 2))
    head.add_row(
        f"[bold]asyncmq demo[/] queue {QUEUE!r}, concurrency {config.concurrency}, in-memory backend",
        f"{stats.elapsed_s:.1f} s / {config.duration_s:.0f} s",
    )
    head.add_row(
        f"produced {stats.produced}/{stats.planned}, settled {len(stats.settled)}",
        f"[bold]{stats.throughput(now):.0f}[/] jobs/s",
    )
    counts = Table(*_STATES, "retries", "progress", "repeat runs", title="Jobs", title_justify="left")
    counts.add_row(
        *(str(stats.counts.get(state, 0)) for state in _STATES),
        str(stats.retries),
        str(stats.progress_updates),
        str(stats.repeat_runs),
    )
    recent = Table(title="Recent events", title_justify="left")
    for column, width in (("+s", 5), ("event", 13), ("task", 15), ("job", 8), ("detail", 10)):
        recent.add_column(column, min_width=width, no_wrap=True, overflow="ellipsis")
    for event in stats.recent:
        recent.add_row(
            f"{event.at - stats.started_at:.2f}", event.event, event.task, event.job_id, event.detail
        )
    bar = ProgressBar(total=stats.planned, completed=len(stats.settled), width=60)
    return Group(head, bar, counts, recent)


@contextmanager
def _quiet_engine_logs() -> Iterator[None]:
    """The always-failing job logs a warning per failure; the display shows those already."""
    logger = logging.getLogger("asyncmq")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


async def _main(
    config: DemoConfig,
    on_tick: Callable[[DemoStats], None],
    finish: Callable[[DemoStats], None],
    metrics: tuple[int | None, str],
    hold_s: float | None,
) -> None:
    """Run the demo, show its summary (`finish`), then keep its metrics served until Ctrl-C,
    or until `hold_s` seconds after the start: the endpoint the demo advertised is there to
    be looked at, and a demo ending seconds after it starts would take it away."""
    from asyncmq.backends.memory import InMemoryBackend
    from asyncmq.demo import run_demo

    started = time.monotonic()
    backend = InMemoryBackend()
    async with metrics_endpoint(*metrics, backend, any_port=True) as url:
        stop, interrupted = asyncio.Event(), asyncio.Event()

        def on_signal(sig: signal.Signals) -> None:
            interrupted.set()
            stop.set()

        with stop_signals(on_signal):
            finish(await run_demo(config, on_tick, stop, backend=backend))
            if url is None or interrupted.is_set():
                return
            until = "" if hold_s is None else f" or {hold_s:g} s after the start (--duration)"
            click.echo(f"The demo is done; metrics stay on {url} until Ctrl-C{until}.")
            left = None if hold_s is None else max(0.0, hold_s - (time.monotonic() - started))
            try:
                await asyncio.wait_for(interrupted.wait(), left)
            except TimeoutError:
                click.echo(f"--duration {hold_s:g} s reached: metrics no longer served; the demo is over.")
                return
            click.echo("Ctrl-C: metrics no longer served; the demo is over.")


def _print_summary(stats: DemoStats) -> None:
    for line in summary_lines(stats):
        click.echo(line)


def _run_live(config: DemoConfig, metrics: tuple[int | None, str], hold_s: float | None) -> None:
    from rich.live import Live

    with Live(refresh_per_second=8) as live:

        def finish(stats: DemoStats) -> None:
            live.stop()  # the summary and what follows print below the last view
            _print_summary(stats)

        run(_main(config, lambda stats: live.update(render_live(stats, config)), finish, metrics, hold_s))


def _run_plain(config: DemoConfig, metrics: tuple[int | None, str], hold_s: float | None) -> None:
    from asyncmq.demo import QUEUE

    click.echo(
        f"asyncmq demo: {config.jobs} jobs on queue {QUEUE!r}, concurrency {config.concurrency}, "
        f"in-memory backend; stops when all have settled, or after {config.duration_s:g} s"
    )
    run(_main(config, lambda stats: click.echo(plain_line(stats)), _print_summary, metrics, hold_s))


@click.command("demo")
@click.option("--jobs", type=click.IntRange(min=1), default=300, show_default=True, help="Jobs to produce.")
@click.option("--concurrency", type=click.IntRange(min=1), default=20, show_default=True)
@click.option(
    "--duration",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help=f"End the demo this many seconds after its start. Without it the jobs run until all "
    f"have settled or {_JOB_LIMIT_S:g} s have passed, and --metrics-port keeps serving after the "
    "summary until Ctrl-C.",
)
@click.option(
    "--seed", type=int, default=None, help="Seed which jobs fail and the delays, for a repeatable run."
)
@metrics_port_option
def demo(
    jobs: int,
    concurrency: int,
    duration: float | None,
    seed: int | None,
    metrics_port: int | None,
    metrics_host: str,
) -> None:
    """Watch a worker run every kind of job, in this process, on the in-memory backend."""
    from asyncmq.demo import DemoConfig

    live = sys.stdout.isatty()
    limit_s = duration if duration is not None else _JOB_LIMIT_S
    config = DemoConfig(jobs, concurrency, limit_s, seed, tick_s=0.25 if live else 1.0)
    with _quiet_engine_logs():
        metrics = (metrics_port, metrics_host)
        (_run_live if live else _run_plain)(config, metrics, duration)
