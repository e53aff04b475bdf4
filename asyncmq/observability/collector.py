"""Queue-state gauges read from the backend when Prometheus scrapes, not from events, so they
are right with no worker running, and a scrape costs one backend read per queue (O(queues),
never O(jobs)).

Prometheus scrapes from the metrics server's thread while the backend lives on an event
loop: the read runs on that loop and the scrape waits for it at most `timeout_s`. A slow or
failing backend shows as `asyncmq_backend_up 0` and the queue gauges are left out; the scrape
itself never hangs.

The same read gives the queue totals (`asyncmq.transitions.TOTALS`) that the backend keeps
per (queue, task) in the same step as each move, whoever made it: served as counters
`asyncmq_queue_jobs_<total>_total{queue, task}`, every total of every (queue, task) the backend
knows, from 0. Unlike the per-process `asyncmq_jobs_*_total` counters they count producers and
CLI commands nobody scrapes, and do not reset when a worker restarts. A worker also serves
them at 0 for each task defined in its process whose default queue is one it reports: so the
series exist before a new task's first jobs end, and `rate()` sees its first burst.

Queues past the label cap (`metrics_max_queues`) are summed under `queue="other"`, so a
producer that invents queue names cannot make every scrape huge; their depth still counts.
Tasks past `metrics_max_tasks` are summed the same way under `task="other"`.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from asyncmq.backends.base import QueueStats
from asyncmq.job import JobState
from asyncmq.logging import get_logger
from asyncmq.observability.metrics import OTHER, LabelCap
from asyncmq.registry import TASK_REGISTRY
from asyncmq.transitions import TOTALS

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from asyncmq.backends.base import BaseBackend

__all__ = ["TOTAL_HELP", "QueueStateCollector"]

#: What each queue total counts, as its metric's help.
TOTAL_HELP = {
    "enqueued": "Jobs stored by any process, or sent back to waiting by a manual retry.",
    "claimed": "Jobs handed to a worker (claimed; one may still expire or be handed back).",
    "completed": "Attempts that succeeded.",
    "retried": "Attempts that failed with another scheduled.",
    "failed": "Jobs dead-lettered (stall failures and unreadable records included).",
    "expired": "Jobs whose TTL passed before they started.",
    "cancelled": "Jobs cancelled, by any process.",
    "stalled": "Jobs recovered from a vanished worker.",
    "deduplicated": "Adds not stored because another job held their deduplication key, by any process.",
    "debounced": "Jobs stored in the place of their deduplication key's delayed holder, by any process.",
}

log = get_logger(__name__)


class QueueStateCollector(Collector):
    """Build it on the thread running `loop`; Prometheus then scrapes from any other.

    `labels`: the job metrics' queue and task caps, so both keep the same values by name (the
    job metrics report the folds); without them, the collector keeps its own caps (of
    `max_queues` and `max_tasks`) and reports what it folded."""

    def __init__(
        self,
        backend: BaseBackend,
        loop: asyncio.AbstractEventLoop,
        *,
        queues: Sequence[str] | None = None,
        timeout_s: float = 5.0,
        max_queues: int = 100,
        max_tasks: int = 200,
        labels: tuple[LabelCap, LabelCap] | None = None,
        reports_folds: bool | None = None,
    ) -> None:
        self.backend = backend
        self.loop = loop
        self.queues = queues
        self.timeout_s = timeout_s
        self._reports_folds = labels is None if reports_folds is None else reports_folds
        self.queue_label, self.task_label = labels or (
            LabelCap("queue", max_queues),
            LabelCap("task", max_tasks),
        )
        self._loop_thread = threading.get_ident()  # built on the loop's thread, by contract
        self._failure: str | None = None  # why the last read failed, said once

    def describe(self) -> Iterator[Metric]:
        """The names, without reading the backend (the registry asks when registering)."""
        yield _up_family()
        yield from _families({}, 0.0)
        if self._reports_folds:
            yield self._folded_family()

    def collect(self) -> Iterator[Metric]:
        stats = self._read()
        up = _up_family()
        up.add_metric([self.backend.name], 0.0 if stats is None else 1.0)
        yield up
        if stats is not None:
            yield from _families(self._capped(stats), time.time())
        if self._reports_folds:
            yield self._folded_family()

    def _capped(self, stats: dict[str, QueueStats]) -> dict[str, QueueStats]:
        """Queues in name order through the cap (the job metrics' cap has usually admitted the
        worker's own queues first); those folded summed into one `other`."""
        kept: dict[str, QueueStats] = {}
        folded: list[QueueStats] = []
        for queue in sorted(stats):
            label = self.queue_label(queue)
            queue_stats = stats[queue]
            queue_stats.totals = self._capped_tasks(queue_stats.totals)
            if label == OTHER:  # a queue named "other" joins them
                folded.append(queue_stats)
            else:
                kept[label] = queue_stats
        if folded:
            kept[OTHER] = _summed(folded)
        return kept

    def _capped_tasks(self, totals: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
        capped: dict[str, dict[str, int]] = {}
        for task in sorted(totals):
            _add_totals(capped.setdefault(self.task_label(task), {}), totals[task])
        return capped

    def _folded_family(self) -> CounterMetricFamily:
        family = CounterMetricFamily(
            "asyncmq_metric_label_values_folded",
            "Distinct label values shown as `other` because their label reached its cap.",
            labels=["label"],
        )
        for cap in (self.queue_label, self.task_label):
            family.add_metric([cap.label], float(cap.folded))
        return family

    def _read(self) -> dict[str, QueueStats] | None:
        if self.loop.is_closed():
            return None
        if threading.get_ident() == self._loop_thread:
            log.error(
                "queue state cannot be read on the backend's own event loop thread; scrape from another"
            )
            return None
        future = asyncio.run_coroutine_threadsafe(self._stats(), self.loop)
        try:
            stats = future.result(self.timeout_s)
        except Exception as exc:
            future.cancel()
            self._failed(exc)
            return None
        if self._failure is not None:
            log.info("reading queue state from the %s backend works again", self.backend.name)
            self._failure = None
        return stats

    def _failed(self, exc: Exception) -> None:
        """One line when reads start failing or fail differently, not a traceback per scrape:
        Prometheus scrapes every few seconds, and `asyncmq_backend_up 0` already says it."""
        if isinstance(exc, TimeoutError):
            why = f"no answer within {self.timeout_s:g}s"
        else:
            why = " ".join(f"{type(exc).__name__}: {exc}".split())
        if why != self._failure:
            log.error(
                "reading queue state from the %s backend failed (%s); asyncmq_backend_up is 0 until it "
                "works again (logged again only if the error changes)",
                self.backend.name,
                why,
            )
            self._failure = why

    async def _stats(self) -> dict[str, QueueStats]:
        names = list(self.queues) if self.queues is not None else await self.backend.queues()
        now = time.time()
        results = await asyncio.gather(*(self.backend.stats(name, now) for name in names))
        stats = dict(zip(names, results, strict=True))
        for task in TASK_REGISTRY.values():
            if task.queue in stats:
                stats[task.queue].totals.setdefault(task.name, {})
        return stats


def _add_totals(into: dict[str, int], more: dict[str, int]) -> None:
    for name, count in more.items():
        into[name] = into.get(name, 0) + count


def _summed(many: list[QueueStats]) -> QueueStats:
    """The queue state of several queues as one: counts, totals and workers added, the oldest
    waiting job the oldest of all, paused if any is."""
    counts: dict[str, int] = {}
    totals: dict[str, dict[str, int]] = {}
    for stats in many:
        _add_totals(counts, stats.counts)
        for task, by_name in stats.totals.items():
            _add_totals(totals.setdefault(task, {}), by_name)
    oldest = [stats.oldest_waiting_at for stats in many if stats.oldest_waiting_at is not None]
    return QueueStats(
        counts=counts,
        oldest_waiting_at=min(oldest) if oldest else None,
        paused=any(stats.paused for stats in many),
        workers=[worker for stats in many for worker in stats.workers],
        totals=totals,
    )


def _up_family() -> GaugeMetricFamily:
    return GaugeMetricFamily(
        "asyncmq_backend_up",
        "1 when the last scrape read the queue state from the backend.",
        labels=["backend"],
    )


def _families(stats: dict[str, QueueStats], now: float) -> Iterator[Metric]:
    jobs = GaugeMetricFamily(
        "asyncmq_queue_jobs", "Jobs per state, read from the backend.", labels=["queue", "state"]
    )
    oldest = GaugeMetricFamily(
        "asyncmq_queue_oldest_job_age_seconds", "Age of the oldest runnable waiting job.", labels=["queue"]
    )
    workers = GaugeMetricFamily(
        "asyncmq_workers", "Live workers seen through backend heartbeats.", labels=["queue"]
    )
    paused = GaugeMetricFamily("asyncmq_queue_paused", "1 while the queue is paused.", labels=["queue"])
    totals = {
        name: CounterMetricFamily(f"asyncmq_queue_jobs_{name}", TOTAL_HELP[name], labels=["queue", "task"])
        for name in TOTALS
    }
    for queue, queue_stats in sorted(stats.items()):
        for task, by_name in sorted(queue_stats.totals.items()):
            for name, family in totals.items():
                family.add_metric([queue, task], float(by_name.get(name, 0)))
        for state in JobState:
            jobs.add_metric([queue, state.value], float(queue_stats.counts.get(state.value, 0)))
        since = queue_stats.oldest_waiting_at
        oldest.add_metric([queue], 0.0 if since is None else max(now - since, 0.0))
        workers.add_metric([queue], float(len(queue_stats.workers)))
        paused.add_metric([queue], 1.0 if queue_stats.paused else 0.0)
    yield from (jobs, oldest, workers, paused)
    yield from totals.values()
