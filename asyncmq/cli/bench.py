"""`asyncmq bench`: measure enqueue rates, process rate, latency, CPU and memory per job.

A terminal gets a rich progress bar, a pipe or a CI log one plain line per step; both end
with the same table. The measuring lives in `asyncmq.bench`, so scripts can reuse it.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import click
from click.core import ParameterSource

from asyncmq.cli.common import print_table, run, valid_queue_names

if TYPE_CHECKING:
    from asyncmq.bench.measure import BenchConfig, Spread
    from asyncmq.bench.profile import Profiler

__all__ = ["bench"]

#: `asyncmq.bench.WORKLOADS`' names, spelled out so that `asyncmq --help` registers no task.
_WORKLOAD_NAMES = ("noop", "io", "cpu", "small", "large")


@contextmanager
def _progress(total: int) -> Iterator[Callable[[str], None]]:
    """A callback told each step as it starts: on a terminal a rich bar names the running step
    beside the count of steps done, elsewhere one line per step, numbered, as it starts."""
    if not sys.stdout.isatty():
        started = itertools.count(1)
        yield lambda step: click.echo(f"[{next(started)}/{total}] {step} ...")
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, transient=True) as bar:
        task = bar.add_task("asyncmq bench", total=total)
        done = itertools.count()
        yield lambda step: bar.update(task, completed=next(done), description=step)


def _check_options(backend: str, processes: int | None, profile: Path | None, plot: Path | None) -> None:
    """Refuse, before anything runs, the combinations that could only fail later."""
    from asyncmq.backends import backend_from_url
    from asyncmq.cli.failures import note_backend
    from asyncmq.errors import ConfigurationError

    note_backend(backend)
    try:
        backend_from_url(backend)
    except (ConfigurationError, ImportError) as exc:
        raise click.BadParameter(str(exc), param_hint="'--backend'") from None
    if processes is not None and backend.startswith("memory:"):
        message = "memory:// lives inside one process; worker processes need a shared backend (redis://...)"
        raise click.BadParameter(message, param_hint="'--processes'")
    if processes is not None and profile is not None:
        message = "--profile profiles a worker in this process; attach py-spy to worker processes instead"
        raise click.BadParameter(message, param_hint="'--profile'")
    if plot is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise click.UsageError("--plot needs matplotlib: pip install 'asyncmq[bench]'") from None


def _command_line(ctx: click.Context) -> list[str]:
    """The command as given, options in a fixed order, so the JSON says how to run it again
    (`sys.argv` would name the test runner when invoked in-process)."""
    words = ["asyncmq", ctx.info_name or "bench"]
    for param in ctx.command.params:
        source = ctx.get_parameter_source(param.name or "")
        if not isinstance(param, click.Option) or source is not ParameterSource.COMMANDLINE:
            continue
        value = ctx.params[param.name or ""]
        for one in value if param.multiple else (value,):
            words += [param.opts[0], str(one)]
    return words


def _measure(config: BenchConfig, profiler: Profiler | None) -> dict[str, dict[str, Spread]]:
    from asyncmq.bench.measure import run_bench

    with _progress(config.steps) as step:
        return run(run_bench(config, step, profiler))


@click.command("bench")
@click.option("--backend", metavar="URL", default="memory://", show_default=True, help="Backend to measure.")
@click.option(
    "--workload",
    "workloads",
    type=click.Choice(_WORKLOAD_NAMES),
    multiple=True,
    help="noop, io (sleeps 10 ms), cpu (~1 ms of Python), small (~100-byte argument) or large "
    "(~64 KB argument); repeatable. Default: noop.",
)
@click.option(
    "--jobs",
    type=click.IntRange(min=1),
    default=10_000,
    show_default=True,
    help="Jobs per enqueue phase; the worker drains twice as many.",
)
@click.option("--concurrency", type=click.IntRange(min=1), default=10, show_default=True)
@click.option(
    "--processes",
    type=click.IntRange(min=1),
    default=None,
    help="Process with this many `asyncmq worker start` processes instead of a worker in this "
    "process (not with memory://).",
)
@click.option(
    "--repeat", type=click.IntRange(min=1), default=3, show_default=True, help="Rounds; figures are medians."
)
@click.option(
    "--rate",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    help="Jobs/s the producer paces for the latency figures (at most 5 s of them).",
)
@click.option(
    "--queue",
    "queue_prefix",
    default="bench",
    show_default=True,
    callback=valid_queue_names,
    help="Prefix of the queues measured; each round adds a unique suffix and deletes its queue.",
)
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), help="Write JSON here.")
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), help="Write a PNG chart here.")
@click.option(
    "--profile",
    type=click.Path(file_okay=False, path_type=Path),
    help="Profile processing into DIR/worker.prof (pstats) and DIR/worker.collapsed (stacks for "
    "flamegraph.pl or speedscope). Slows the figures. To profile a running worker instead: "
    "py-spy record -o flame.svg --pid PID",
)
def bench(
    backend: str,
    workloads: tuple[str, ...],
    jobs: int,
    concurrency: int,
    processes: int | None,
    repeat: int,
    rate: int,
    queue_prefix: str,
    json_path: Path | None,
    plot: Path | None,
    profile: Path | None,
) -> None:
    """Measure how fast this backend and machine enqueue, process and finish jobs.

    Each round enqueues --jobs jobs one by one and --jobs in bulk, drains them with one worker,
    then paces jobs at --rate per second into a running worker for the latency percentiles
    (created to finished). Each figure is the median, with its range, over --repeat rounds.
    """
    from asyncmq.bench.measure import BenchConfig
    from asyncmq.bench.profile import Profiler
    from asyncmq.bench.report import BenchReport, headline

    _check_options(backend, processes, profile, plot)
    config = BenchConfig(
        backend, workloads or ("noop",), jobs, concurrency, processes, repeat, rate, queue_prefix
    )
    profiler = Profiler(profile) if profile is not None else None
    click.echo(headline(config))  # first, so the steps and the table below it say what they measure
    report = BenchReport(config, _measure(config, profiler), _command_line(click.get_current_context()))
    print_table(["workload", "figure", "median", "min-max"], report.rows())
    if json_path is not None:
        report.write_json(json_path)
        click.echo(f"Wrote {json_path}")
    if plot is not None:
        report.write_plot(plot)
        click.echo(f"Wrote {plot}")
    if profiler is not None:
        for path in profiler.write():
            click.echo(f"Wrote {path}")
