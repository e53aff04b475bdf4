"""`asyncmq bench --plot` and the bench's words, read from the matplotlib figure object and the
CLI's output: a panel per figure of the table, log scales where values span decades, value
labels, the legend clear of every panel, the running step named and the process count said."""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

from asyncmq.bench import measure
from asyncmq.bench.measure import METRICS, PHASES, BenchConfig, Spread, run_bench
from asyncmq.bench.report import LOG_SPAN, PLOT_ROWS, BenchReport, headline
from tests.cli.helpers import invoke

pytest.importorskip("matplotlib")

_LOG_SUFFIX = ", log scale"


@pytest.fixture
def figures() -> Iterator[list[Any]]:
    """The figures a test drew, closed afterwards (pyplot keeps every open figure)."""
    drawn: list[Any] = []
    yield drawn
    import matplotlib.pyplot as pyplot

    for figure in drawn:
        pyplot.close(figure)


def _data_axes(figure: Any) -> dict[str, Any]:
    """The panels that draw bars, by the table's label of their figure."""
    return {axis.get_title().removesuffix(_LOG_SUFFIX): axis for axis in figure.axes if axis.patches}


def _spans_decades(spreads: list[Spread]) -> bool:
    low, high = min(spread.min for spread in spreads), max(spread.max for spread in spreads)
    return low > 0 and high / low >= LOG_SPAN


def _assert_plots_the_table(report: BenchReport, figure: Any) -> None:
    panels = _data_axes(figure)
    assert set(panels) == {row[1] for row in report.rows()}  # one panel per figure of the table
    for metric, label in METRICS.items():
        spreads = [figures[metric] for figures in report.results.values() if metric in figures]
        if not spreads:
            continue
        axis = panels[label]
        log = _spans_decades(spreads)
        assert axis.get_yscale() == ("log" if log else "linear"), label
        assert axis.get_title().endswith(_LOG_SUFFIX) is log
        assert [tick.get_text() for tick in axis.get_xticklabels()] == list(report.results)
        values = [text.get_text() for text in axis.texts]
        assert len(values) == len(spreads)  # a value label on every bar
        assert axis.get_legend() is None


def _assert_legend_clear_of_every_panel(figure: Any) -> None:
    figure.canvas.draw()
    (legend,) = figure.legends
    box = legend.get_window_extent()
    assert not any(box.overlaps(axis.get_window_extent()) for axis in figure.axes)


def test_every_metric_has_a_place_in_the_plot() -> None:
    placed = [metric for row in PLOT_ROWS for metric in row]
    assert sorted(placed) == sorted(METRICS)


async def test_plot_of_a_run_has_one_panel_per_figure_of_its_table(figures: list[Any]) -> None:
    config = BenchConfig("memory://", ("noop", "small"), jobs=200, repeat=1, rate=2000)
    report = BenchReport(config, await run_bench(config))
    figures.append(figure := report.plot())
    _assert_plots_the_table(report, figure)
    _assert_legend_clear_of_every_panel(figure)
    # the in-memory backend counts no round trips: the panel stays, saying so
    (empty,) = [axis for axis in figure.axes if not axis.patches]
    assert empty.get_title() == METRICS["round_trips_per_job"]
    assert "memory:// makes no round trips" in empty.texts[0].get_text()


def test_plot_uses_a_log_scale_exactly_where_values_span_decades(figures: list[Any]) -> None:
    def spread(median: float) -> Spread:
        return Spread(median, median * 0.9, median * 1.1)

    # the figures of the issue: 977/s beside 189,300/s, 0.03 ms beside 13.6 ms
    wide = {"process_jobs_per_s": (189_300.0, 977.0), "latency_p50_ms": (0.03, 13.6)}
    results = {
        workload: {metric: spread(wide.get(metric, (50.0, 70.0))[index]) for metric in METRICS}
        for index, workload in enumerate(("noop", "io"))
    }
    report = BenchReport(BenchConfig("redis://127.0.0.1:6379/9", ("noop", "io")), results)
    figures.append(figure := report.plot())
    _assert_plots_the_table(report, figure)
    panels = _data_axes(figure)
    scales = {label: axis.get_yscale() for label, axis in panels.items()}
    assert scales == {label: "log" if metric in wide else "linear" for metric, label in METRICS.items()}
    process = panels[METRICS["process_jobs_per_s"]]
    assert [text.get_text() for text in process.texts] == ["189,300", "977"]
    bottom, top = process.get_ylim()
    assert bottom < 977 * 0.9  # both bars and their whiskers inside
    assert top > 189_300 * 1.1
    _assert_legend_clear_of_every_panel(figure)


async def test_progress_names_each_step_before_it_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    happened: list[str] = []

    def recording(phase: str, original: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def run(*args: Any, **kwargs: Any) -> Any:
            happened.append(f"ran {phase}")
            return await original(*args, **kwargs)

        return run

    runners = ("enqueue_one_by_one", "enqueue_bulk", "_process", "_latency")
    for phase, runner in zip(PHASES, runners, strict=True):
        monkeypatch.setattr(measure, runner, recording(phase, getattr(measure, runner)))
    config = BenchConfig("memory://", ("noop",), jobs=50, repeat=1, rate=2000)
    await run_bench(config, happened.append)
    assert happened == [event for phase in PHASES for event in (f"noop: {phase}", f"ran {phase}")]


def test_cli_progress_lines_name_the_running_step_and_the_title_the_workers() -> None:
    result = invoke("bench", "--jobs", "50", "--repeat", "1", "--rate", "2000")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    title = (
        "asyncmq bench on memory://: 50 jobs per phase, 1 worker in this process at concurrency 10, 1 round"
    )
    assert lines[:5] == [title] + [f"[{index}/4] noop: {phase} ..." for index, phase in enumerate(PHASES, 1)]


def test_headline_names_the_worker_processes_and_hides_the_password() -> None:
    config = BenchConfig("redis://user:secret@host:6379/0", jobs=5000, concurrency=4, processes=3, repeat=2)
    assert headline(config) == (
        "asyncmq bench on redis://user:***@host:6379/0: 5,000 jobs per phase, "
        "3 worker processes at concurrency 4 each, 2 rounds"
    )


def test_terminal_bar_names_the_running_step_beside_the_steps_done(monkeypatch: pytest.MonkeyPatch) -> None:
    from rich.progress import Progress

    from asyncmq.cli.bench import _progress

    shown: list[tuple[str, int]] = []
    original = Progress.update

    def update(self: Progress, task: Any, **fields: Any) -> None:
        shown.append((fields["description"], fields["completed"]))
        original(self, task, **fields)

    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    monkeypatch.setattr(Progress, "update", update)
    with _progress(len(PHASES)) as step:
        for phase in PHASES:
            step(f"noop: {phase}")
    assert shown == [(f"noop: {phase}", done) for done, phase in enumerate(PHASES)]
