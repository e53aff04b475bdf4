"""Counters, gauges and histograms for the per-job hot path, at a fraction of the cost.

prometheus_client takes a lock on every increment and scans its buckets one by one on every
observation: about a microsecond a call, several calls a job. Here all updates happen on the
worker's event loop thread, so a child is plain attributes (an addition, a `bisect`), and a
scrape, from the server's thread, copies them under the GIL. The API is the small part of
prometheus_client's that `JobMetrics` uses (`labels(...)`, `inc`, `dec`, `set`, `observe`
with an exemplar), so the same code runs on prometheus_client's classes where they are
needed: in multiprocess mode, whose values live in files.
"""

from __future__ import annotations

import time
from bisect import bisect_left, bisect_right
from collections.abc import Iterator, Sequence
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.samples import Exemplar

__all__ = ["FastCounter", "FastGauge", "FastHistogram"]


class _Family(Collector):
    kind = "untyped"

    def __init__(
        self, name: str, documentation: str, labelnames: Sequence[str] = (), *, registry: CollectorRegistry
    ) -> None:
        self.name, self.documentation, self.labelnames = name, documentation, list(labelnames)
        self._children: dict[tuple[str, ...], Any] = {}
        registry.register(self)

    def labels(self, *values: str) -> Any:
        key = tuple(str(value) for value in values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self._new_child()
        return child

    def _new_child(self) -> Any:
        raise NotImplementedError

    def describe(self) -> Iterator[Any]:
        yield self._family()

    def _family(self) -> Any:
        raise NotImplementedError


class _Value:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount

    def dec(self, amount: float = 1.0) -> None:
        self.value -= amount

    def set(self, value: float) -> None:
        self.value = value


class _ScalarFamily(_Family):
    """A family whose children each hold one value (counters, gauges)."""

    def _new_child(self) -> _Value:
        return _Value()

    def collect(self) -> Iterator[Any]:
        family = self._family()
        for key, child in list(self._children.items()):
            family.add_metric(list(key), child.value)
        yield family


class FastCounter(_ScalarFamily):
    def _family(self) -> CounterMetricFamily:
        return CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)


class FastGauge(_ScalarFamily):
    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str] = (),
        *,
        registry: CollectorRegistry,
        multiprocess_mode: str = "",  # accepted for prometheus_client's signature; one process here
    ) -> None:
        super().__init__(name, documentation, labelnames, registry=registry)

    def _family(self) -> GaugeMetricFamily:
        return GaugeMetricFamily(self.name, self.documentation, labels=self.labelnames)


#: From this many values a batch is sorted first (see `observe_many`).
_SORT_FROM = 8


class _Buckets:
    __slots__ = ("bounds", "counts", "exemplars", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * len(bounds)
        self.exemplars: list[Exemplar | None] = [None] * len(bounds)
        self.sum = 0.0

    def observe(self, amount: float, exemplar: dict[str, str] | None = None) -> None:
        index = bisect_left(self.bounds, amount)  # the first bucket whose bound is >= amount
        self.counts[index] += 1
        self.sum += amount
        if exemplar is not None:
            self.exemplars[index] = Exemplar(exemplar, amount, time.time())

    def observe_many(self, amounts: Sequence[float]) -> None:
        """A batch's values: sorted, a bucket's share is found by one search in them, and
        the search stops at the bucket of the largest. A batch's values crowd a few buckets,
        so that is a handful of searches instead of one per value."""
        counts, total = self.counts, sum(amounts)
        if len(amounts) < _SORT_FROM or total != total:  # a NaN among them cannot be sorted
            bounds = self.bounds
            for amount in amounts:
                counts[bisect_left(bounds, amount)] += 1
        else:
            ordered = sorted(amounts)
            placed, size = 0, len(ordered)
            for index, bound in enumerate(self.bounds):
                below = bisect_right(ordered, bound, placed)  # values <= bound, as bisect_left above
                counts[index] += below - placed
                placed = below
                if placed == size:
                    break
        self.sum += total


class FastHistogram(_Family):
    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str] = (),
        *,
        buckets: Sequence[float],
        registry: CollectorRegistry,
    ) -> None:
        self.bounds = (*sorted(float(b) for b in buckets), float("inf"))
        super().__init__(name, documentation, labelnames, registry=registry)

    def _new_child(self) -> _Buckets:
        return _Buckets(self.bounds)

    def _family(self) -> HistogramMetricFamily:
        return HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = self._family()
        for key, child in list(self._children.items()):
            counts, exemplars, total = list(child.counts), list(child.exemplars), child.sum
            running, buckets = 0, []
            for bound, count, exemplar in zip(self.bounds, counts, exemplars, strict=True):
                running += count
                label = "+Inf" if bound == float("inf") else _bound_label(bound)
                buckets.append((label, float(running), exemplar) if exemplar else (label, float(running)))
            family.add_metric(list(key), buckets, total)
        yield family


def _bound_label(bound: float) -> str:
    """As prometheus_client writes `le`: 0.001, 1.0, 3600.0."""
    return repr(float(bound))
