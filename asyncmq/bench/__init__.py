"""`asyncmq bench`: measure this machine's and this backend's cost per job.

`workloads` holds the tasks measured, `measure` times them (enqueue, processing, paced
latency, worker CPU and memory, each apart), `profile` records where the worker's time went,
and `report` turns the figures into a table, JSON and a plot. Nothing here is imported by
`import asyncmq`.
"""

from __future__ import annotations

from asyncmq.bench.measure import BenchConfig, Spread, run_bench
from asyncmq.bench.profile import Profiler
from asyncmq.bench.report import BenchReport
from asyncmq.bench.workloads import WORKLOADS, Workload

__all__ = ["WORKLOADS", "BenchConfig", "BenchReport", "Profiler", "Spread", "Workload", "run_bench"]
