"""Building blocks of asyncmq's Grafana dashboards, and the loader that turns a
`dashboards/*.dashboard.py` file into the JSON committed next to it.

Every panel reads Prometheus through the `$datasource` variable, so one JSON file imports into
any Grafana whatever its Prometheus is called, and every query comes from
`asyncmq.observability.queries` with `queue=~"$queue"` and `$__rate_interval`: a panel charts
exactly what an alert rule compares with its threshold. Needs the extra:
`pip install 'asyncmq[dashboards]'`.
"""

from __future__ import annotations

import json
import math
import runpy
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from grafanalib._gen import DashboardEncoder
from grafanalib.core import (
    GRAPH_TOOLTIP_MODE_SHARED_CROSSHAIR,
    REFRESH_ON_TIME_RANGE_CHANGE,
    Dashboard,
    DashboardLink,
    GaugePanel,
    GridPos,
    Stat,
    StatValueMappingItem,
    StatValueMappings,
    Target,
    Template,
    Templating,
    Text,
    Time,
    TimeSeries,
)

from asyncmq.errors import ConfigurationError
from asyncmq.observability import queries
from asyncmq.observability.alerts import ALERTS, RUNBOOKS_UID, runbook_panel_id

__all__ = [
    "DATASOURCE",
    "GRID_WIDTH",
    "QUEUE",
    "WINDOW",
    "Query",
    "backend_latency_panel",
    "backend_operations_panel",
    "backend_up_stat",
    "capacity_panel",
    "dashboard",
    "dead_letter_stat",
    "deduplication_panel",
    "depth_panel",
    "duration_panel",
    "flow",
    "gauge",
    "latency_panel",
    "lateness_panel",
    "listener_errors_panel",
    "oldest_age_panel",
    "panel_queries",
    "percentiles",
    "rate_limited_panel",
    "ratios_panel",
    "render_dashboard",
    "runbooks_dashboard",
    "saturation_gauge",
    "stat",
    "throughput_panel",
    "timeseries",
    "wait_panel",
    "waiting_stat",
    "workers_stat",
]

#: Every panel and target queries the Prometheus the viewer picks in the `datasource` variable.
DATASOURCE: dict[str, str] = {"type": "prometheus", "uid": "${datasource}"}
#: The queues the viewer picks, as a label matcher for `asyncmq.observability.queries`.
QUEUE = 'queue=~"$queue"'
#: At least four scrapes whatever the zoom, so a rate never falls between two samples.
WINDOW = "$__rate_interval"
#: Grafana lays panels out on a grid 24 columns wide.
GRID_WIDTH = 24
#: Grafana 10's dashboard schema: newer Grafanas migrate it, none downgrades a panel.
_SCHEMA_VERSION = 39
#: The tracing backend the exemplars' trace ids are opened in (the stack runs Jaeger).
_TRACES_PLUGIN = "jaeger"
_EXPLORE_TRACE = "/explore?left=" + json.dumps(
    {"datasource": "${traces}", "queries": [{"refId": "A", "query": "${__data.fields.trace_id}"}]},
    separators=(",", ":"),
)

#: (legend, PromQL): one line, bar or value of a panel.
Query = tuple[str, str]


# -- the pieces every panel is made of ----------------------------------------------------
def _targets(targets: Sequence[Query], exemplars: bool) -> list[dict[str, Any]]:
    """grafanalib's Target lacks `exemplar`, `editorMode` and `range`: added here, so the
    PromQL opens as written (code mode) and histogram panels plot each sampled job's trace."""
    return [
        {
            **Target(
                expr=expr,
                legendFormat=legend,
                refId=chr(ord("A") + index),
                datasource=DATASOURCE,
                intervalFactor=1,
            ).to_json_data(),
            "editorMode": "code",
            "exemplar": exemplars,
            "range": True,
        }
        for index, (legend, expr) in enumerate(targets)
    ]


def _steps(*steps: tuple[str, float | None]) -> list[dict[str, Any]]:
    """Threshold steps from (colour, from value); the first starts at minus infinity (None)."""
    return [{"color": color, "value": value} for color, value in steps]


def _size(width: int, height: int) -> Any:
    """A size only: `flow` gives the position."""
    return GridPos(h=height, w=width, x=0, y=0)


def timeseries(
    title: str,
    description: str,
    unit: str,
    *targets: Query,
    width: int = 12,
    height: int = 8,
    traces: bool = False,
) -> Any:
    """A time series panel. `traces=True` (job-time quantiles) asks Prometheus for exemplars
    and links each to its trace in Explore, so a slow point on the chart opens a slow job."""
    trace_link = {"fieldConfig": {"defaults": {"links": [_trace_link()]}}} if traces else None
    return TimeSeries(
        title=title,
        description=description,
        dataSource=DATASOURCE,
        targets=_targets(targets, exemplars=traces),
        unit=unit,
        gridPos=_size(width, height),
        maxDataPoints=None,
        tooltipMode="multi",
        tooltipSort="desc",
        thresholds=_steps(("green", None)),
        extraJson=trace_link,
    )


def _trace_link() -> dict[str, Any]:
    return {"title": "Trace ${__data.fields.trace_id}", "url": _EXPLORE_TRACE, "targetBlank": True}


def stat(
    title: str,
    description: str,
    unit: str,
    *targets: Query,
    steps: Sequence[tuple[str, float | None]] = (("text", None),),
    mappings: Sequence[tuple[str, str, str]] = (),
    width: int = 4,
    height: int = 5,
) -> Any:
    """The last value of each series, coloured by `steps` or, for states, by `mappings`
    of (value, text, colour)."""
    return Stat(
        title=title,
        description=description,
        dataSource=DATASOURCE,
        targets=_targets(targets, exemplars=False),
        format=unit,
        gridPos=_size(width, height),
        maxDataPoints=None,
        reduceCalc="lastNotNull",
        noValue=None,
        colorMode="background" if mappings else "value",
        thresholds=_steps(*steps),
        mappings=_value_mappings(mappings),
    )


def _value_mappings(mappings: Sequence[tuple[str, str, str]]) -> list[Any]:
    """Grafana value mappings from (value, text, colour): a state shown by its name."""
    items = [StatValueMappingItem(text, value, color) for value, text, color in mappings]
    return [StatValueMappings(*items)] if items else []


def gauge(title: str, description: str, query: Query, *, width: int = 8, height: int = 5) -> Any:
    """A share from 0 to 1: orange from 80 %, red from 95 %. grafanalib's gauge has no
    `options`, where Grafana reads the reduction and the markers: they are set here."""
    return GaugePanel(
        title=title,
        description=description,
        dataSource=DATASOURCE,
        targets=_targets([query], exemplars=False),
        format="percentunit",
        min=0,
        max=1,
        gridPos=_size(width, height),
        maxDataPoints=None,
        thresholds=_steps(("green", None), ("orange", 0.8), ("red", 0.95)),
        extraJson={
            "options": {
                "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                "showThresholdLabels": False,
                "showThresholdMarkers": True,
            }
        },
    )


def flow(panels: Sequence[Any]) -> list[Any]:
    """Place panels left to right in the order given, wrapping at the grid's 24 columns, so a
    dashboard reads as a list and no two panels can overlap."""
    x = y = row_height = 0
    for panel in panels:
        size = panel.gridPos
        if x + size.w > GRID_WIDTH:
            x, y, row_height = 0, y + row_height, 0
        panel.gridPos = GridPos(h=size.h, w=size.w, x=x, y=y)
        x += size.w
        row_height = max(row_height, size.h)
    return list(panels)


# -- variables and the dashboard ----------------------------------------------------------
def _variables(every_queue: bool) -> Templating:
    """The Prometheus and the tracing backend to read (any Grafana names them its own way),
    and the queues: several on the overview, one on the queue dashboard."""
    return Templating(
        [
            Template(name="datasource", label="Data source", type="datasource", query="prometheus"),
            Template(name="traces", label="Traces", type="datasource", query=_TRACES_PLUGIN),
            Template(
                name="queue",
                label="Queue",
                query="label_values(asyncmq_queue_jobs, queue)",
                dataSource=DATASOURCE,
                refresh=REFRESH_ON_TIME_RANGE_CHANGE,
                multi=every_queue,
                includeAll=every_queue,
                allValue=".*" if every_queue else None,
            ),
        ]
    )


def dashboard(title: str, uid: str, description: str, panels: Sequence[Any], *, every_queue: bool) -> Any:
    """A dashboard of `panels` in reading order, tagged `asyncmq` and linked to the others."""
    return Dashboard(
        title=title,
        uid=uid,
        description=description,
        tags=["asyncmq"],
        panels=flow(panels),
        templating=_variables(every_queue),
        links=[DashboardLink(title="AsyncMQ", tags=["asyncmq"], asDropdown=True, keepTime=True)],
        graphTooltip=GRAPH_TOOLTIP_MODE_SHARED_CROSSHAIR,
        refresh="30s",
        schemaVersion=_SCHEMA_VERSION,
        time=Time("now-3h", "now"),
        timezone="browser",
    ).auto_panel_ids()


# -- panels both dashboards show --------------------------------------------------------
_UP_DOWN = (("0", "down", "red"), ("1", "up", "green"))


def percentiles(query: Callable[[float], str], *quantiles: float, series: str = "{{queue}}") -> list[Query]:
    """`query(q)` for each quantile, its legend the series and `p50`, `p99`..."""
    return [(f"{series} p{q * 100:g}", query(q)) for q in quantiles]


def backend_up_stat(width: int = 4) -> Any:
    return stat(
        "Backend up",
        "Whether the last scrape read the queue state from the backend. Down: queue gauges are missing.",
        "short",
        ("{{backend}}", queries.backend_up()),
        mappings=_UP_DOWN,
        width=width,
    )


def workers_stat(width: int = 4) -> Any:
    return stat(
        "Live workers",
        "Workers whose heartbeat the backend has seen recently. Zero with a backlog: nothing runs it.",
        "short",
        ("{{queue}}", queries.workers(QUEUE)),
        steps=(("red", None), ("green", 1)),
        width=width,
    )


def waiting_stat(width: int = 4) -> Any:
    return stat(
        "Waiting jobs",
        "Jobs runnable now and not yet started.",
        "short",
        ("{{queue}}", queries.waiting(QUEUE)),
        width=width,
    )


def dead_letter_stat(width: int = 4) -> Any:
    return stat(
        "Dead-letter jobs",
        "Jobs whose last attempt failed (state failed): each needs a retry or a decision.",
        "short",
        ("{{queue}}", queries.dead_letter_size(QUEUE)),
        steps=(("green", None), ("orange", 1)),
        width=width,
    )


def saturation_gauge(width: int = 8) -> Any:
    return gauge(
        "Worker saturation",
        "Running attempts per worker slot. Near 100 %: jobs wait for a slot, add workers or concurrency.",
        ("{{queue}}", queries.saturation(QUEUE)),
        width=width,
    )


def throughput_panel(width: int = 12) -> Any:
    return timeseries(
        "Throughput by outcome",
        "Jobs stored (enqueued) and how attempts and jobs ended, per second, from the totals the "
        "queue keeps: every producer, worker and CLI command counts, scraped or not.",
        "ops",
        *((total, queries.total_rate(total, QUEUE, WINDOW, by="")) for total in queries.TOTAL_OUTCOMES),
        width=width,
    )


def depth_panel(width: int = 12) -> Any:
    return timeseries(
        "Queue depth by state",
        "Jobs per state, read from the backend: a rising waiting line means producers outpace workers. "
        "active is every job a worker has claimed: running, prefetched and awaiting a free slot, or "
        "finished with its outcome not yet stored; so it exceeds the attempts in progress, by up to "
        "2 x claim_batch_size per worker. blocked jobs wait for parent jobs to complete (depends_on).",
        "short",
        ("{{queue}} {{state}}", queries.jobs_by_state(QUEUE)),
        width=width,
    )


def oldest_age_panel(width: int = 12) -> Any:
    return timeseries(
        "Oldest waiting job age",
        "How long the oldest runnable job has waited: the delay the next job to start has seen.",
        "s",
        ("{{queue}}", queries.oldest_job_age(QUEUE)),
        width=width,
    )


def wait_panel(width: int = 12) -> Any:
    return timeseries(
        "Wait time p50 / p95 / p99",
        "From runnable to started: time spent queued for a free worker slot.",
        "s",
        *percentiles(lambda q: queries.wait_quantile(q, QUEUE, WINDOW), 0.5, 0.95, 0.99),
        width=width,
        traces=True,
    )


def latency_panel(width: int = 12) -> Any:
    return timeseries(
        "Job latency p50 / p99",
        "From enqueued to finished: what a producer waits for a result, delays and retries included.",
        "s",
        *percentiles(lambda q: queries.latency_quantile(q, QUEUE, WINDOW), 0.5, 0.99),
        width=width,
        traces=True,
    )


def duration_panel(width: int = 12) -> Any:
    return timeseries(
        "Duration p99 by task",
        "From started to finished, per attempt: which task is slow.",
        "s",
        ("{{queue}} {{task}}", queries.duration_quantile(0.99, QUEUE, WINDOW)),
        width=width,
        traces=True,
    )


def ratios_panel(width: int = 12) -> Any:
    return timeseries(
        "Retry rate and failure rate",
        "Retries per job claimed, and dead-lettered jobs per job ended, from the queue totals.",
        "percentunit",
        ("{{queue}} retries", queries.retry_ratio(QUEUE, WINDOW)),
        ("{{queue}} failures", queries.failure_ratio(QUEUE, WINDOW)),
        width=width,
    )


def capacity_panel(width: int = 12) -> Any:
    return timeseries(
        "Workers, in progress and concurrency",
        "Live workers, attempts running and the slots offered: in progress at concurrency is saturation.",
        "short",
        ("{{queue}} workers", queries.workers(QUEUE)),
        ("{{queue}} in progress", queries.in_progress(QUEUE)),
        ("{{queue}} concurrency", queries.concurrency(QUEUE)),
        width=width,
    )


def lateness_panel(width: int = 12) -> Any:
    return timeseries(
        "Delayed-job lateness p50 / p99",
        "How long after their due time delayed, cron and retried jobs start.",
        "s",
        *percentiles(lambda q: queries.delayed_lateness_quantile(q, QUEUE, WINDOW), 0.5, 0.99),
        width=width,
        traces=True,
    )


def rate_limited_panel(width: int = 12) -> Any:
    return timeseries(
        "Rate-limited starts",
        "Starts the queue's rate limit held back, per second: waiting caused by the limit, not the workers.",
        "ops",
        ("{{queue}}", queries.rate_limited_rate(QUEUE, WINDOW)),
        width=width,
    )


def deduplication_panel(width: int = 12) -> Any:
    return timeseries(
        "Deduplicated and debounced adds",
        "Adds per second that stored nothing because another job held their deduplication key "
        "(deduplicated), and jobs stored in the place of their key's delayed holder (debounced), "
        "from the totals the queue keeps: every producer counts, scraped or not.",
        "ops",
        *(
            (f"{{{{queue}}}} {total}", queries.total_rate(total, QUEUE, WINDOW))
            for total in queries.DEDUPLICATION_TOTALS
        ),
        width=width,
    )


def backend_operations_panel(width: int = 8) -> Any:
    return timeseries(
        "Backend operations",
        "Round trips to the backend per second, by operation: the load asyncmq puts on it.",
        "ops",
        ("{{backend}} {{operation}}", queries.backend_operations_rate(WINDOW)),
        width=width,
    )


def backend_latency_panel(width: int = 8) -> Any:
    return timeseries(
        "Backend operation latency p99",
        "How long the backend takes per operation: a slow backend slows every job.",
        "s",
        ("{{backend}} {{operation}}", queries.backend_latency_quantile(0.99, WINDOW)),
        width=width,
    )


def listener_errors_panel(width: int = 8) -> Any:
    return timeseries(
        "Event listener errors",
        "Event callbacks that raised, per second: a hook or metric that silently stopped working.",
        "ops",
        ("{{event}}", queries.listener_errors_rate(WINDOW)),
        width=width,
    )


# -- loading and reading dashboards -------------------------------------------------------
# -- the runbooks, as a dashboard ------------------------------------------------------------
#: Grid rows a runbook panel takes per line of its Markdown, plus its title bar: tall enough
#: to read a section without scrolling inside the panel.
_ROWS_PER_LINE = 0.7
_TITLE_ROWS = 2


def runbooks_dashboard(markdown: str) -> Any:
    """The runbooks (`docs/runbooks.md`) as a dashboard of text panels, one below the other:
    the introduction, then one panel per `## <alert>` section with the id the alert's
    `runbook_url` opens (`?viewPanel=panel-<id>`). Grafana thus serves the runbooks next to
    the dashboards, and one URL makes both links of every alert absolute."""
    intro, *sections = markdown.strip().split("\n## ")
    chunks = [("Runbooks", intro.strip(), len(ALERTS) + 1)]
    for section in sections:
        title = section.partition("\n")[0].strip()
        try:
            panel_id = runbook_panel_id(title)
        except KeyError:
            raise ConfigurationError(f"the runbooks have a section `## {title}` for no alert") from None
        chunks.append((title, f"## {section.strip()}", panel_id))
    panels, top = [], 0
    for title, content, panel_id in chunks:
        height = _TITLE_ROWS + math.ceil(content.count("\n") * _ROWS_PER_LINE)
        panels.append(
            Text(
                title=title, content=content, id=panel_id, gridPos=GridPos(h=height, w=GRID_WIDTH, x=0, y=top)
            )
        )
        top += height
    return Dashboard(
        title="AsyncMQ / Runbooks",
        uid=RUNBOOKS_UID,
        description="What each asyncmq alert means, what to check and how to fix it.",
        tags=["asyncmq"],
        panels=panels,
        links=[DashboardLink(title="AsyncMQ", tags=["asyncmq"], asDropdown=True, keepTime=True)],
        refresh="",  # text only: nothing to refresh
        schemaVersion=_SCHEMA_VERSION,
        time=Time("now-3h", "now"),
        timezone="browser",
    )


def render_dashboard(path: Path) -> str:
    """The JSON of the `dashboard` that the `*.dashboard.py` file at `path` defines, keys
    sorted and newline-terminated: the same source always gives the same bytes, so the
    committed file can be checked against its source."""
    built = runpy.run_path(str(path)).get("dashboard")
    if built is None:
        raise ConfigurationError(f"{path} defines no `dashboard`")
    return json.dumps(built.to_json_data(), cls=DashboardEncoder, sort_keys=True, indent=2) + "\n"


def panel_queries(dashboard_json: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, PromQL) for every target, in panel order, with the dashboard's variables
    (`$queue`, `$__rate_interval`) still in it: what a test runs against a real Prometheus."""
    return [
        (panel["title"], target["expr"])
        for panel in dashboard_json["panels"]
        for target in panel.get("targets", [])
    ]
