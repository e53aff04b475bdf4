"""AsyncMQ / Overview: every queue at a glance, then why one is slow or failing.

The top row answers "is anything wrong now" (backend, workers, backlog, dead letters,
saturation); the charts below follow a job's life: arrival and outcomes, waiting, running,
failing, capacity, schedules, and the backend underneath.
"""

from asyncmq.observability import grafana as g

__all__ = ["dashboard"]

dashboard = g.dashboard(
    "AsyncMQ / Overview",
    "asyncmq-overview",
    "Throughput, backlog, latency, failures and capacity of the selected asyncmq queues.",
    [
        g.backend_up_stat(),
        g.workers_stat(),
        g.waiting_stat(),
        g.dead_letter_stat(),
        g.saturation_gauge(),
        g.throughput_panel(),
        g.depth_panel(),
        g.wait_panel(),
        g.oldest_age_panel(),
        g.duration_panel(),
        g.latency_panel(),
        g.ratios_panel(),
        g.capacity_panel(),
        g.lateness_panel(width=8),
        g.rate_limited_panel(width=8),
        g.deduplication_panel(width=8),
        g.backend_operations_panel(),
        g.backend_latency_panel(),
        g.listener_errors_panel(),
    ],
    every_queue=True,
)
