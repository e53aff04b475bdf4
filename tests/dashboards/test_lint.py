"""What every panel of the generated dashboards must be: a modern type, with a unit, reading
the chosen Prometheus, querying only metrics asyncmq exports over `$__rate_interval`, and
placed where no other panel is."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from asyncmq.backends.memory import InMemoryBackend
from asyncmq.observability import instrument
from asyncmq.observability.collector import QueueStateCollector
from asyncmq.observability.grafana import DATASOURCE, GRID_WIDTH, panel_queries

ROOT = Path(__file__).resolve().parents[2]
#: The dashboards of charts; `runbooks.json` shows the runbooks' text and has no queries.
DASHBOARDS = sorted(path for path in (ROOT / "dashboards").glob("*.json") if path.name != "runbooks.json")
MODERN_TYPES = {"timeseries", "stat", "gauge", "bargauge", "heatmap", "table"}
#: The sample names Prometheus stores for each family type.
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
METRIC = re.compile(r"\basyncmq_\w+")
RANGE = re.compile(r"\[([^\]]*)\]")
#: Histograms of a job's times, whose samples carry its trace id as an exemplar.
JOB_TIME = re.compile(r"histogram_quantile\(.*asyncmq_(job|schedule)_\w+_seconds_bucket")


def _load(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return loaded


@pytest.fixture(params=DASHBOARDS, ids=lambda path: path.name)
def board(request: pytest.FixtureRequest) -> dict[str, Any]:
    return _load(request.param)


def _exported_metric_names() -> set[str]:
    """The names Prometheus stores for what a live instrumentation and the queue-state
    collector export."""
    registry = CollectorRegistry()
    instrument(registry=registry, tracing=False)
    loop = asyncio.new_event_loop()
    try:
        families = [*registry.collect(), *QueueStateCollector(InMemoryBackend(), loop).describe()]
    finally:
        loop.close()
    return {family.name + suffix for family in families for suffix in SUFFIXES[family.type]}


def test_there_are_three_dashboards_with_their_titles_and_uids() -> None:
    found = {(board["uid"], board["title"]) for board in map(_load, (ROOT / "dashboards").glob("*.json"))}
    assert found == {
        ("asyncmq-overview", "AsyncMQ / Overview"),
        ("asyncmq-queue", "AsyncMQ / Queue"),
        ("asyncmq-runbooks", "AsyncMQ / Runbooks"),
    }


def test_the_runbooks_are_markdown_text_panels_one_below_the_other() -> None:
    board = _load(ROOT / "dashboards" / "runbooks.json")
    assert {panel["type"] for panel in board["panels"]} == {"text"}
    assert {panel["options"]["mode"] for panel in board["panels"]} == {"markdown"}
    assert {(panel["gridPos"]["x"], panel["gridPos"]["w"]) for panel in board["panels"]} == {(0, GRID_WIDTH)}
    tops = [panel["gridPos"]["y"] for panel in board["panels"]]
    bottoms = [panel["gridPos"]["y"] + panel["gridPos"]["h"] for panel in board["panels"]]
    assert tops == [0, *bottoms[:-1]]
    assert "asyncmq" in board["tags"]


def test_every_panel_is_a_modern_type_with_a_unit_reading_the_datasource_variable(
    board: dict[str, Any],
) -> None:
    for panel in board["panels"]:
        assert panel["type"] in MODERN_TYPES, panel["title"]
        assert panel["fieldConfig"]["defaults"]["unit"], panel["title"]
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        assert all(target["datasource"] == DATASOURCE for target in panel["targets"]), panel["title"]


def test_the_datasource_and_queue_variables_are_offered(board: dict[str, Any]) -> None:
    variables = {variable["name"]: variable for variable in board["templating"]["list"]}
    assert (variables["datasource"]["type"], variables["datasource"]["query"]) == ("datasource", "prometheus")
    assert variables["queue"]["query"] == "label_values(asyncmq_queue_jobs, queue)"
    assert variables["queue"]["datasource"] == DATASOURCE


def test_every_query_names_only_metrics_asyncmq_exports(board: dict[str, Any]) -> None:
    exported = _exported_metric_names()
    queries = [expr for _, expr in panel_queries(board)]
    queries += [variable["query"] for variable in board["templating"]["list"] if variable["type"] == "query"]
    for expr in queries:
        names = set(METRIC.findall(expr))
        assert names, expr
        assert names <= exported, f"{expr} names {sorted(names - exported)}"


def test_every_rate_is_over_the_rate_interval(board: dict[str, Any]) -> None:
    for title, expr in panel_queries(board):
        assert expr.count("rate(") == len(RANGE.findall(expr)), (title, expr)
        assert set(RANGE.findall(expr)) <= {"$__rate_interval"}, (title, expr)


def test_job_time_panels_ask_for_exemplars_and_link_to_the_trace(board: dict[str, Any]) -> None:
    traced = 0
    for panel in board["panels"]:
        for target in panel["targets"]:
            assert target["exemplar"] == bool(JOB_TIME.search(target["expr"])), target["expr"]
        if any(target["exemplar"] for target in panel["targets"]):
            traced += 1
            urls = [link["url"] for link in panel["fieldConfig"]["defaults"]["links"]]
            assert any(url.startswith("/explore") and "${__data.fields.trace_id}" in url for url in urls)
    assert traced >= 3


def test_no_two_panels_overlap_and_every_panel_fits_the_grid(board: dict[str, Any]) -> None:
    boxes = [(panel["title"], panel["gridPos"]) for panel in board["panels"]]
    for title, box in boxes:
        assert 0 <= box["x"] < box["x"] + box["w"] <= GRID_WIDTH, title
    for (first, a), (second, b) in itertools.combinations(boxes, 2):
        apart = (
            a["x"] + a["w"] <= b["x"]
            or b["x"] + b["w"] <= a["x"]
            or a["y"] + a["h"] <= b["y"]
            or b["y"] + b["h"] <= a["y"]
        )
        assert apart, f"{first!r} overlaps {second!r}"


def test_panel_ids_are_unique(board: dict[str, Any]) -> None:
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))


def test_panel_queries_pairs_every_target_with_its_panel_title() -> None:
    board = {
        "panels": [
            {"title": "A", "targets": [{"expr": "x"}, {"expr": "y"}]},
            {"title": "B", "targets": [{"expr": "z"}]},
        ]
    }
    assert panel_queries(board) == [("A", "x"), ("A", "y"), ("B", "z")]


def test_panels_charting_the_active_state_say_it_counts_prefetched_jobs_too(board: dict[str, Any]) -> None:
    """`active` is every job a worker claimed and has not stored an outcome for: running, but
    also prefetched and waiting for a slot, so it exceeds `in progress`; a panel that charts it
    says so rather than let a reader take it for the running jobs."""
    charting = [
        panel
        for panel in board["panels"]
        if any("asyncmq_queue_jobs{" in t["expr"] and "state=" not in t["expr"] for t in panel["targets"])
    ]
    assert charting
    for panel in charting:
        assert "active" in panel["description"], panel["title"]
        assert "prefetched" in panel["description"], panel["title"]
