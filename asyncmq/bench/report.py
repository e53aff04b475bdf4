"""What `asyncmq bench` hands back: a table, a JSON document and a plot of the same figures.

The JSON names the machine and the exact command, because a figure without them cannot be
compared with the next run's; every password (the backend URL's) is masked.
"""

from __future__ import annotations

import os
import platform
import shlex
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from asyncmq.backends.base import redacted_url
from asyncmq.bench.measure import METRICS, BenchConfig, Spread
from asyncmq.version import __version__

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["LOG_SPAN", "PLOT_ROWS", "BenchReport", "headline", "machine"]

#: The plot's grid, one panel per figure of the table (every key of `METRICS`), a row per kind:
#: rates, latency percentiles, then what a job costs the worker and the backend.
PLOT_ROWS: tuple[tuple[str, ...], ...] = (
    ("enqueue_one_by_one_jobs_per_s", "enqueue_bulk_jobs_per_s", "process_jobs_per_s"),
    ("latency_p50_ms", "latency_p95_ms", "latency_p99_ms"),
    ("worker_cpu_s_per_1000_jobs", "worker_peak_rss_mb", "round_trips_per_job"),
)
#: A panel whose values span this ratio or more is drawn on a log scale: on a linear one, a
#: 977 jobs/s bar beside a 189,300 jobs/s bar is a line on the axis.
LOG_SPAN = 10.0


def headline(config: BenchConfig) -> str:
    """What a run measured, for the table's title and the plot's: the backend, the jobs, who
    processes them (one worker in this process, or how many worker processes) and the rounds."""
    if config.processes is None:
        workers = f"1 worker in this process at concurrency {config.concurrency}"
    else:
        workers = f"{config.processes} worker processes at concurrency {config.concurrency} each"
    rounds = f"{config.repeat} round" + ("s" if config.repeat > 1 else "")
    backend = redacted_url(config.backend_url)
    return f"asyncmq bench on {backend}: {config.jobs:,} jobs per phase, {workers}, {rounds}"


def machine(backend_url: str) -> dict[str, Any]:
    """What the figures depend on besides asyncmq: the platform, cores, Python, the backend."""
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "asyncmq": __version__,
        "backend": redacted_url(backend_url),
    }


@dataclass(frozen=True, slots=True)
class BenchReport:
    """The figures of one run, per workload and metric, with what is needed to compare them."""

    config: BenchConfig
    results: dict[str, dict[str, Spread]]
    #: The command that produced the figures, word by word.
    command: list[str] = field(default_factory=lambda: list(sys.argv))

    def to_dict(self) -> dict[str, Any]:
        config = asdict(self.config) | {"backend_url": redacted_url(self.config.backend_url)}
        return {
            "command": shlex.join(redacted_url(word) for word in self.command),
            "machine": machine(self.config.backend_url),
            "config": config | {"latency_jobs": self.config.latency_jobs},
            "labels": dict(METRICS),
            "results": {
                workload: {metric: asdict(spread) for metric, spread in figures.items()}
                for workload, figures in self.results.items()
            },
        }

    def write_json(self, path: Path) -> None:
        path.write_bytes(orjson.dumps(self.to_dict(), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))

    def rows(self) -> list[list[str]]:
        """One row per workload and figure: median, then min-max over the rounds."""
        return [
            [workload, METRICS[metric], _number(spread.median), _range(spread)]
            for workload, figures in self.results.items()
            for metric, spread in figures.items()
        ]

    def plot(self) -> Figure:
        """Every figure of the table in a panel of its own, a bar per workload: the median, its
        value written above the min-max whisker over the rounds, on a log scale (said in the
        title) where the values span a decade or more. A figure the run did not measure keeps
        its panel, saying why, so two runs' plots line up.

        Raises `ImportError` naming the `bench` extra when matplotlib is missing.
        """
        pyplot = _pyplot()
        columns = max(len(row) for row in PLOT_ROWS)
        panel_width = max(3.8, 1.4 + 0.75 * len(self.results))
        figure: Figure
        figure, grid = pyplot.subplots(
            len(PLOT_ROWS),
            columns,
            figsize=(columns * panel_width, 1.0 + 3.3 * len(PLOT_ROWS)),
            squeeze=False,
            layout="constrained",
        )
        palette = pyplot.get_cmap("tab10")
        colors = {workload: palette(index % 10) for index, workload in enumerate(self.results)}
        for row, metrics in zip(grid, PLOT_ROWS, strict=True):
            for axis, metric in zip(row, metrics, strict=False):
                spreads = {
                    name: figures[metric] for name, figures in self.results.items() if metric in figures
                }
                if spreads:
                    _panel(axis, METRICS[metric], spreads, colors)
                else:
                    _not_measured(axis, METRICS[metric], self._why_not_measured(metric))
        figure.suptitle(headline(self.config), fontsize="large")
        figure.legend(
            handles=_legend_handles(self.config.repeat),
            loc="outside lower center",
            ncols=2,
            frameon=False,
        )
        return figure

    def write_plot(self, path: Path) -> None:
        """`plot()` as a PNG."""
        figure = self.plot()
        figure.savefig(path, format="png", dpi=100)
        _pyplot().close(figure)

    def _why_not_measured(self, metric: str) -> str:
        if metric == "round_trips_per_job" and self.config.backend_url.startswith("memory:"):
            return "memory:// makes no round trips"
        if metric == "round_trips_per_job" and self.config.processes is not None:
            return "not counted in worker processes"
        return "not measured in this run"


def _panel(axis: Any, label: str, spreads: dict[str, Spread], colors: dict[str, Any]) -> None:
    positions = range(len(spreads))
    medians = [spread.median for spread in spreads.values()]
    whiskers = [
        [spread.median - spread.min for spread in spreads.values()],
        [spread.max - spread.median for spread in spreads.values()],
    ]
    bar_colors = [colors[workload] for workload in spreads]
    axis.bar(positions, medians, 0.6, yerr=whiskers, capsize=6, color=bar_colors, ecolor="black")
    axis.set_xticks(list(positions), list(spreads))
    axis.set_xlim(-0.6, len(spreads) - 0.4)
    axis.grid(axis="y", alpha=0.3)
    axis.set_axisbelow(True)
    low = min(spread.min for spread in spreads.values())
    high = max(spread.max for spread in spreads.values())
    if low > 0 and high / low >= LOG_SPAN:
        axis.set_yscale("log")
        # room below the shortest bar, and above the tallest whisker for its value
        axis.set_ylim(low / 3, high * (high / low) ** 0.25)
        axis.yaxis.set_minor_formatter(_ticker().NullFormatter())
        axis.set_title(f"{label}, log scale")
    else:
        axis.set_ylim(0, high * 1.2 if high > 0 else 1)
        axis.set_title(label)
    axis.yaxis.set_major_formatter(_ticker().FuncFormatter(lambda value, _: _number(value)))
    for position, spread in zip(positions, spreads.values(), strict=True):
        axis.annotate(
            _number(spread.median),
            (position, spread.max),
            xytext=(0, 5),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize="small",
        )


def _not_measured(axis: Any, label: str, why: str) -> None:
    """An empty panel in the figure's place, so that every figure of the table has one."""
    axis.set_title(label)
    axis.set_xticks([])
    axis.set_yticks([])
    axis.text(0.5, 0.5, f"not measured:\n{why}", ha="center", va="center", transform=axis.transAxes)


def _legend_handles(repeat: int) -> list[Any]:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    rounds = f"{repeat} round" + ("s" if repeat > 1 else "")
    return [
        Patch(facecolor="grey", label=f"median of {rounds} (value written above)"),
        Line2D([], [], color="black", marker="_", markersize=10, label=f"min-max over the {rounds}"),
    ]


def _number(value: float) -> str:
    """Three significant digits at most, thousands separated: what a reader can compare."""
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def _range(spread: Spread) -> str:
    return f"{_number(spread.min)}-{_number(spread.max)}"


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError as exc:
        raise ImportError(f"--plot needs matplotlib: pip install 'asyncmq[bench]' ({exc})") from None
    matplotlib.use("Agg")  # files only: no display, no GUI toolkit
    import matplotlib.pyplot as pyplot

    return pyplot


def _ticker() -> Any:
    import matplotlib.ticker

    return matplotlib.ticker
