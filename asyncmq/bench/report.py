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
from typing import Any

import orjson

from asyncmq.backends.base import redacted_url
from asyncmq.bench.measure import METRICS, BenchConfig, Spread
from asyncmq.version import __version__

__all__ = ["BenchReport", "machine"]

_PLOT_GROUPS = (
    ("Throughput (jobs/s)", ("enqueue_one_by_one_jobs_per_s", "enqueue_bulk_jobs_per_s")),
    ("Processing (jobs/s)", ("process_jobs_per_s",)),
    ("Latency (ms)", ("latency_p50_ms", "latency_p95_ms", "latency_p99_ms")),
    ("Worker CPU (s per 1,000 jobs)", ("worker_cpu_s_per_1000_jobs",)),
    ("Worker peak RSS (MB)", ("worker_peak_rss_mb",)),
)


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

    def write_plot(self, path: Path) -> None:
        """A PNG, one panel per kind of figure, a bar per workload with its min-max range.

        Raises `ImportError` naming the `bench` extra when matplotlib is missing.
        """
        pyplot = _pyplot()
        figure, axes = pyplot.subplots(1, len(_PLOT_GROUPS), figsize=(4 * len(_PLOT_GROUPS), 4.5))
        for axis, (title, metrics) in zip(axes, _PLOT_GROUPS, strict=True):
            self._panel(axis, title, [metric for metric in metrics if self._has(metric)])
        figure.suptitle(f"asyncmq bench on {redacted_url(self.config.backend_url)}")
        figure.tight_layout()
        figure.savefig(path, format="png", dpi=100)
        pyplot.close(figure)

    def _has(self, metric: str) -> bool:
        return any(metric in figures for figures in self.results.values())

    def _panel(self, axis: Any, title: str, metrics: list[str]) -> None:
        workloads = list(self.results)
        width = 0.8 / max(1, len(metrics))
        for index, metric in enumerate(metrics):
            spreads = [self.results[workload][metric] for workload in workloads]
            medians = [spread.median for spread in spreads]
            errors = [
                [spread.median - spread.min for spread in spreads],
                [spread.max - spread.median for spread in spreads],
            ]
            offsets = [position + index * width for position in range(len(workloads))]
            axis.bar(offsets, medians, width, yerr=errors, capsize=3, label=METRICS[metric])
        axis.set_title(title)
        axis.set_xticks([position + width * (len(metrics) - 1) / 2 for position in range(len(workloads))])
        axis.set_xticklabels(workloads)
        if len(metrics) > 1:
            axis.legend(fontsize="small")


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
