"""AsyncMQ / Queue: one queue (`$queue`), and which of its tasks is slow or failing.

The overview's charts narrowed to one queue, plus whether it is paused (a backlog that grows
on purpose) and per-task breakdowns: throughput, duration and failures by error type.
"""

from asyncmq.observability import grafana as g
from asyncmq.observability import queries

__all__ = ["dashboard"]

TASK_OUTCOMES = ("enqueued", "completed", "retried", "failed")

paused = g.stat(
    "Queue state",
    "Paused: workers start nothing from this queue, its backlog grows until it is resumed.",
    "short",
    ("{{queue}}", queries.paused(g.QUEUE)),
    mappings=(("0", "running", "green"), ("1", "paused", "orange")),
)

task_throughput = g.timeseries(
    "Throughput by task",
    "Jobs stored and attempts that succeeded, were retried or dead-lettered, per task and second, "
    "from the queue totals.",
    "ops",
    *(
        (f"{{{{task}}}} {outcome}", queries.total_rate(outcome, g.QUEUE, g.WINDOW, by="task"))
        for outcome in TASK_OUTCOMES
    ),
    width=24,
)

task_duration = g.timeseries(
    "Duration p50 / p99 by task",
    "From started to finished, per attempt: the typical and the slow run of each task.",
    "s",
    *g.percentiles(
        lambda q: queries.duration_quantile(q, g.QUEUE, g.WINDOW, by="task"), 0.5, 0.99, series="{{task}}"
    ),
    traces=True,
)

task_failures = g.timeseries(
    "Failures by task and error type",
    "Jobs dead-lettered per second: by task from the queue totals (0 until the first failure), "
    "and by the exception class of their last attempt as the scraped workers counted them.",
    "ops",
    ("{{task}}", queries.total_rate("failed", g.QUEUE, g.WINDOW, by="task")),
    ("{{task}}: {{error_type}}", queries.outcome_rate("failed", g.QUEUE, g.WINDOW, by="task, error_type")),
    width=24,
)

dashboard = g.dashboard(
    "AsyncMQ / Queue",
    "asyncmq-queue",
    "One asyncmq queue: its backlog, latency, failures and capacity, and a breakdown by task.",
    [
        paused,
        g.backend_up_stat(),
        g.workers_stat(),
        g.waiting_stat(),
        g.dead_letter_stat(),
        g.saturation_gauge(width=4),
        g.throughput_panel(),
        g.depth_panel(),
        g.wait_panel(),
        g.oldest_age_panel(),
        task_duration,
        g.latency_panel(),
        g.ratios_panel(),
        g.capacity_panel(),
        g.lateness_panel(width=8),
        g.rate_limited_panel(width=8),
        g.deduplication_panel(width=8),
        task_throughput,
        task_failures,
    ],
    every_queue=False,
)
