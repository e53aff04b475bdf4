"""PromQL over asyncmq's metrics, written once: the dashboards chart these expressions and the
alert rules compare them with thresholds, so a panel shows exactly what an alert fires on.

Each function takes `matchers`, label matchers without braces (`'queue=~"$queue"'` on a
dashboard, `'queue="emails"'` in a per-queue rule, `""` for every queue) and, for rates, the
`window` (`$__rate_interval` on a dashboard, a fixed `5m` in a rule).

Queue-state gauges (`asyncmq_queue_jobs`, `asyncmq_queue_oldest_job_age_seconds`,
`asyncmq_workers`) and the queue totals (`asyncmq_queue_jobs_<total>_total`) are read from the
backend by every worker and exporter that Prometheus scrapes: each target reports the same
value, so they are combined with `max`, never `sum`. Per-process counters and gauges are
summed across processes.

Which counters answer which question: flows of jobs (how many were enqueued, completed,
failed, and the retry and failure ratios) come from the queue totals, which count every
process's actions, producers and CLI commands nobody scrapes included, and never reset; what
only a worker knows (error types, durations, in progress) comes from its own counters.
"""

from __future__ import annotations

__all__ = [
    "DEDUPLICATION_TOTALS",
    "OUTCOMES",
    "TOTAL_OUTCOMES",
    "backend_latency_quantile",
    "backend_operations_rate",
    "backend_up",
    "backlog",
    "backlog_growth",
    "concurrency",
    "dead_letter_size",
    "delayed_lateness_quantile",
    "duration_quantile",
    "failure_ratio",
    "in_progress",
    "jobs_by_state",
    "latency_quantile",
    "listener_errors_rate",
    "oldest_job_age",
    "outcome_rate",
    "paused",
    "rate_limited_rate",
    "retry_ratio",
    "saturation",
    "selector",
    "targets_up",
    "total_rate",
    "wait_quantile",
    "waiting",
    "workers",
]

_WAITING = 'state="waiting"'
_FAILED = 'state="failed"'

#: The outcomes of an attempt or a job, as counter names.
OUTCOMES = ("completed", "retried", "failed", "expired", "cancelled")
#: What the throughput charts show, as queue total names (`asyncmq.transitions.TOTALS`).
TOTAL_OUTCOMES = ("enqueued", *OUTCOMES, "stalled")
#: What deduplicated adds came to, as queue total names: not stored, or stored in a delayed
#: holder's place.
DEDUPLICATION_TOTALS = ("deduplicated", "debounced")


def selector(*matchers: str) -> str:
    """`{a,b}` from the non-empty matchers, or nothing."""
    kept = [matcher for matcher in matchers if matcher]
    return "{" + ",".join(kept) + "}" if kept else ""


# -- queue state (read from the backend at scrape time) -------------------------------------
def jobs_by_state(matchers: str = "") -> str:
    return f"max by (queue, state) (asyncmq_queue_jobs{selector(matchers)})"


def waiting(matchers: str = "") -> str:
    return f"max by (queue) (asyncmq_queue_jobs{selector(_WAITING, matchers)})"


def dead_letter_size(matchers: str = "") -> str:
    return f"max by (queue) (asyncmq_queue_jobs{selector(_FAILED, matchers)})"


def oldest_job_age(matchers: str = "") -> str:
    return f"max by (queue) (asyncmq_queue_oldest_job_age_seconds{selector(matchers)})"


def workers(matchers: str = "") -> str:
    return f"max by (queue) (asyncmq_workers{selector(matchers)})"


def backend_up() -> str:
    return "min by (backend) (asyncmq_backend_up)"


# -- flows: queue totals (kept by the backend, the same on every target) --------------------
#: The per-process counter that answers a queue total's question for a queue with no totals
#: series (no target serves them yet): claims are seen by workers as attempts started.
_COUNTED_BY_PROCESSES = {"claimed": "started"}


def total_rate(total: str, matchers: str = "", window: str = "5m", by: str = "queue") -> str:
    """Per second, from a queue total (`asyncmq.transitions.TOTALS`): the rate of each
    (queue, task) as the targets report it, the largest taken (they read one backend), then
    summed `by`; for a queue with no totals series, the scraped processes' counter."""
    series = f"rate(asyncmq_queue_jobs_{total}_total{selector(matchers)}[{window}])"
    counted = outcome_rate(_COUNTED_BY_PROCESSES.get(total, total), matchers, window, by)
    return f"(sum by ({by}) (max by (queue, task) ({series})) or {counted})"


def retry_ratio(matchers: str = "", window: str = "5m") -> str:
    """Attempts that failed and were retried, per job claimed (an attempt handed out)."""
    return f"{total_rate('retried', matchers, window)} / {total_rate('claimed', matchers, window)}"


def failure_ratio(matchers: str = "", window: str = "5m") -> str:
    """Jobs dead-lettered, per job that ended (completed or failed). Both totals exist from 0
    for every (queue, task), so the first failures of a queue are a rise, never a new series
    `rate()` cannot see."""
    ended = f"({total_rate('completed', matchers, window)} + {total_rate('failed', matchers, window)})"
    return f"{total_rate('failed', matchers, window)} / {ended}"


# -- flows: per-process counters (summed over processes) ------------------------------------
def outcome_rate(outcome: str, matchers: str = "", window: str = "5m", by: str = "queue") -> str:
    """Per second, as the scraped processes counted it: `enqueued`, `started` or one of
    `OUTCOMES`. For what only a worker knows (`failed` by `error_type`); job flows read
    `total_rate`, which also counts the processes nobody scrapes."""
    return f"sum by ({by}) (rate(asyncmq_jobs_{outcome}_total{selector(matchers)}[{window}]))"


def rate_limited_rate(matchers: str = "", window: str = "5m") -> str:
    return f"sum by (queue) (rate(asyncmq_rate_limited_total{selector(matchers)}[{window}]))"


def listener_errors_rate(window: str = "5m") -> str:
    return f"sum by (event) (rate(asyncmq_event_listener_errors_total[{window}]))"


def backend_operations_rate(window: str = "5m") -> str:
    return f"sum by (backend, operation) (rate(asyncmq_backend_operations_total[{window}]))"


# -- capacity (per-process gauges, summed) ---------------------------------------------------
def in_progress(matchers: str = "") -> str:
    return f"sum by (queue) (asyncmq_jobs_in_progress{selector(matchers)})"


def concurrency(matchers: str = "") -> str:
    return f"sum by (queue) (asyncmq_worker_concurrency{selector(matchers)})"


def saturation(matchers: str = "") -> str:
    """Share of the worker slots busy: 1 means every slot runs a job."""
    return f"{in_progress(matchers)} / {concurrency(matchers)}"


# -- time (histograms) ----------------------------------------------------------------------
def _quantile(q: float, histogram: str, matchers: str, window: str, by: str) -> str:
    buckets = f"rate({histogram}_bucket{selector(matchers)}[{window}])"
    return f"histogram_quantile({q}, sum by ({by}, le) ({buckets}))"


def wait_quantile(q: float, matchers: str = "", window: str = "5m") -> str:
    """Time from runnable to started."""
    return _quantile(q, "asyncmq_job_wait_seconds", matchers, window, "queue")


def latency_quantile(q: float, matchers: str = "", window: str = "5m") -> str:
    """Time from enqueued to finished."""
    return _quantile(q, "asyncmq_job_latency_seconds", matchers, window, "queue")


def duration_quantile(q: float, matchers: str = "", window: str = "5m", by: str = "queue, task") -> str:
    return _quantile(q, "asyncmq_job_duration_seconds", matchers, window, by)


def delayed_lateness_quantile(q: float, matchers: str = "", window: str = "5m") -> str:
    """How late delayed and cron jobs start after their due time."""
    return _quantile(q, "asyncmq_schedule_lateness_seconds", matchers, window, "queue")


def backend_latency_quantile(q: float, window: str = "5m") -> str:
    return _quantile(q, "asyncmq_backend_operation_seconds", "", window, "backend, operation")


# -- what the alert rules add ---------------------------------------------------------------
_BACKLOG = 'state=~"waiting|delayed"'


def backlog(matchers: str = "") -> str:
    """Jobs that still need a worker: runnable now, or delayed. Delayed jobs count because
    with no worker running nothing makes them runnable when they fall due."""
    return f"sum by (queue) (max by (queue, state) (asyncmq_queue_jobs{selector(_BACKLOG, matchers)}))"


def backlog_growth(matchers: str = "", window: str = "15m") -> str:
    """Waiting jobs gained per second, the trend over `window` (negative while it drains): a
    depth that keeps rising means jobs arrive faster than the workers finish them."""
    return f"deriv({waiting(matchers)}[{window}:])"


def paused(matchers: str = "") -> str:
    """1 while the queue is paused: its backlog is then expected."""
    return f"max by (queue) (asyncmq_queue_paused{selector(matchers)})"


def targets_up() -> str:
    """Prometheus' own health of every asyncmq scrape target (workers and the exporter)."""
    return 'up{job=~"asyncmq.*"}'
