"""The demo: one process, the in-memory backend, one worker, and a producer that sends jobs
down every path a job can take.

It exists so anyone can watch asyncmq work within seconds with nothing to install: jobs
that succeed, a flaky one that succeeds on a retry, one that always fails and ends in the
dead-letter queue, delayed jobs, a repeatable job, a sync task and one reporting progress.
Everything it counts is read from lifecycle events (`event_emitter`), as a user's own
observer would. The display lives in `asyncmq.cli.demo`; this module runs and keeps score.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from asyncmq.backends.memory import InMemoryBackend
from asyncmq.backoff import Backoff
from asyncmq.context import current_job, report_progress
from asyncmq.core.event import Event, Listener, Payload
from asyncmq.core.seam import event_emitter
from asyncmq.queues import Queue
from asyncmq.tasks import Task, task

if TYPE_CHECKING:
    from asyncmq.backends.base import BaseBackend

__all__ = [
    "QUEUE",
    "DemoConfig",
    "DemoJob",
    "DemoStats",
    "RecentEvent",
    "bounce",
    "charge_card",
    "import_contacts",
    "job_mix",
    "percentile",
    "plan_jobs",
    "render_invoice",
    "report_health",
    "run_demo",
    "send_email",
]

QUEUE = "emails"
#: Share of each kind of job in the mix; plain e-mails fill the rest.
_SHARES = (("flaky", 0.10), ("dead", 0.05), ("delayed", 0.10), ("sync", 0.08), ("progress", 0.07))
_OUTCOMES = {
    Event.JOB_COMPLETED: "completed",
    Event.JOB_FAILED: "failed",
    Event.JOB_EXPIRED: "expired",
    Event.JOB_CANCELLED: "cancelled",
}
#: What the demo listens to (`job:enqueued` and `job:started` would drown the rest).
_WATCHED = (Event.JOB_DELAYED, Event.JOB_PROGRESS, Event.JOB_RETRIED, Event.JOB_STALLED, *_OUTCOMES)


# -- the tasks --------------------------------------------------------------------------
@task(queue=QUEUE, name="demo.send_email")
async def send_email(to: str) -> dict[str, str]:
    """Succeeds after a short random wait (the SMTP round trip)."""
    await asyncio.sleep(random.uniform(0.01, 0.1))
    return {"to": to, "status": "sent"}


@task(queue=QUEUE, name="demo.charge_card", retries=3, backoff=Backoff.fixed(0.2))
async def charge_card(order: int, failures: int) -> dict[str, Any]:
    """Flaky: its first `failures` attempts fail, then a retry succeeds."""
    await asyncio.sleep(random.uniform(0.01, 0.05))
    if current_job().job.attempt <= failures:
        raise ConnectionError(f"payment gateway unreachable for order {order}")
    return {"order": order, "charged": True}


@task(queue=QUEUE, name="demo.bounce_email", retries=2, backoff=Backoff.fixed(0.1))
async def bounce(to: str) -> None:
    """Always fails: after its retries it ends in the dead-letter queue (state `failed`)."""
    await asyncio.sleep(0.01)
    raise LookupError(f"mailbox {to} does not exist")


@task(queue=QUEUE, name="demo.render_invoice")
def render_invoice(order: int) -> str:
    """A plain function: the worker runs it in a thread, so its blocking sleep blocks no one."""
    time.sleep(random.uniform(0.005, 0.03))
    return f"invoice-{order}.pdf"


@task(queue=QUEUE, name="demo.import_contacts")
async def import_contacts(batch: int, steps: int = 4) -> int:
    """Reports progress after each step (`job:progress`)."""
    for step in range(1, steps + 1):
        await asyncio.sleep(0.02)
        await report_progress({"step": step, "of": steps})
    return steps * 25


@task(queue=QUEUE, name="demo.report_health")
async def report_health() -> str:
    """Run by a repeatable schedule, every second."""
    return "ok"


# -- the plan ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class DemoJob:
    kind: str
    task: Task[Any, Any]
    args: tuple[Any, ...]
    delay_s: float | None = None


def job_mix(count: int) -> dict[str, int]:
    """How many jobs of each kind `count` jobs hold; each kind appears when there is room."""
    mix: dict[str, int] = {}
    left = count
    for kind, share in _SHARES:
        mix[kind] = min(left, max(1, round(count * share)))
        left -= mix[kind]
    mix["email"] = left
    return mix


def _job(kind: str, n: int, rng: random.Random) -> DemoJob:
    if kind == "flaky":
        return DemoJob(kind, charge_card, (n, rng.choice((0, 1, 1, 2))))
    if kind == "dead":
        return DemoJob(kind, bounce, (f"nobody{n}@example.invalid",))
    if kind == "sync":
        return DemoJob(kind, render_invoice, (n,))
    if kind == "progress":
        return DemoJob(kind, import_contacts, (n,))
    delay_s = round(rng.uniform(0.5, 3.0), 3) if kind == "delayed" else None
    return DemoJob(kind, send_email, (f"user{n}@example.com",), delay_s)


def plan_jobs(count: int, rng: random.Random) -> list[DemoJob]:
    """The jobs to send, shuffled; `rng` decides the order, the flaky failures and the delays."""
    kinds = [kind for kind, n in job_mix(count).items() for _ in range(n)]
    rng.shuffle(kinds)
    return [_job(kind, n, rng) for n, kind in enumerate(kinds)]


# -- the score --------------------------------------------------------------------------
def percentile(values: Sequence[float], pct: float) -> float | None:
    """Nearest-rank percentile; `None` for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(math.ceil(pct / 100 * len(ordered)), 1) - 1]


@dataclass(frozen=True, slots=True)
class RecentEvent:
    at: float
    event: str
    task: str
    job_id: str
    detail: str


def _detail(payload: Payload) -> str:
    if "error" in payload:
        return f"{payload['error']['type']}: {payload['error']['message']}"
    if "progress" in payload:
        return f"progress {payload['progress']}"
    return f"attempt {payload['attempt']}"


@dataclass(slots=True)
class DemoStats:
    """What the events said so far; `counts` (jobs per state) is read from the queue each tick."""

    planned: int
    started_at: float = field(default_factory=time.time)
    elapsed_s: float = 0.0
    produced: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    outcomes: Counter[str] = field(default_factory=Counter)
    settled: set[str] = field(default_factory=set)
    completed_after_retry: int = 0
    retries: int = 0
    progress_updates: int = 0
    repeat_runs: int = 0
    #: finished_at - created_at of each completed job, so delays and backoff count too.
    latencies_s: list[float] = field(default_factory=list)
    recent: deque[RecentEvent] = field(default_factory=lambda: deque(maxlen=8))
    finish_times: deque[float] = field(default_factory=lambda: deque(maxlen=10_000))
    stop_reason: str = "running"

    @property
    def all_settled(self) -> bool:
        return len(self.settled) >= self.planned

    def record(self, event: Event, payload: Payload) -> None:
        short_task = payload["task"].removeprefix("demo.")
        self.recent.append(
            RecentEvent(time.time(), event.value, short_task, payload["id"][-8:], _detail(payload))
        )
        if event is Event.JOB_RETRIED:
            self.retries += 1
        elif event is Event.JOB_PROGRESS:
            self.progress_updates += 1
        elif event in _OUTCOMES:
            self._finish(event, payload)

    def _finish(self, event: Event, payload: Payload) -> None:
        self.finish_times.append(time.time())
        if "repeat_key" in payload:
            self.repeat_runs += 1
            return
        if payload["id"] in self.settled:
            return
        self.settled.add(payload["id"])
        self.outcomes[_OUTCOMES[event]] += 1
        if event is Event.JOB_COMPLETED:
            stamps = payload["timestamps"]
            self.latencies_s.append(stamps["finished_at"] - stamps["created_at"])
            if payload["attempt"] > 1:
                self.completed_after_retry += 1

    def throughput(self, now: float, window_s: float = 2.0) -> float:
        """Jobs finished per second over the last `window_s` seconds."""
        finished = 0
        for at in reversed(self.finish_times):
            if at < now - window_s:
                break
            finished += 1
        return finished / max(min(window_s, now - self.started_at), 1e-3)

    def summary(self) -> dict[str, Any]:
        return {
            "produced": self.produced,
            "completed": self.outcomes["completed"],
            "completed_after_retry": self.completed_after_retry,
            "failed": self.outcomes["failed"],
            "expired": self.outcomes["expired"],
            "cancelled": self.outcomes["cancelled"],
            "unsettled": self.produced - len(self.settled),
            "retries": self.retries,
            "repeatable_runs": self.repeat_runs,
            "progress_updates": self.progress_updates,
            "throughput_per_s": len(self.settled) / max(self.elapsed_s, 1e-3),
            "latency_p50_s": percentile(self.latencies_s, 50),
            "latency_p95_s": percentile(self.latencies_s, 95),
            "latency_p99_s": percentile(self.latencies_s, 99),
        }


# -- the run ----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class DemoConfig:
    jobs: int = 300
    concurrency: int = 20
    #: The longest the demo runs; it stops sooner once every produced job has settled.
    duration_s: float = 15.0
    #: Seeds the plan (which jobs fail, the delays) for a repeatable run.
    seed: int | None = None
    #: How often `on_tick` sees the score.
    tick_s: float = 0.25


async def _produce(queue: Queue, plan: Sequence[DemoJob], stats: DemoStats) -> None:
    """Send jobs in small bursts, as traffic arrives, so the display shows a flow."""
    await queue.add_repeatable(report_health.name, every=1)
    for start in range(0, len(plan), 25):
        for job in plan[start : start + 25]:
            await job.task.options(delay=job.delay_s).enqueue(queue.backend, *job.args)
            stats.produced += 1
        await asyncio.sleep(0.1)


def _subscribe(stats: DemoStats, stop: asyncio.Event) -> list[tuple[Event, Listener]]:
    def listener_for(event: Event) -> Listener:
        def listen(payload: Payload) -> None:
            stats.record(event, payload)
            if stats.all_settled:
                stop.set()

        return listen

    listeners = [(event, listener_for(event)) for event in _WATCHED]
    for event, listener in listeners:
        event_emitter.on(event, listener)
    return listeners


async def _watch(
    queue: Queue,
    stats: DemoStats,
    stop: asyncio.Event,
    config: DemoConfig,
    on_tick: Callable[[DemoStats], None],
) -> None:
    deadline = time.monotonic() + config.duration_s
    while not stop.is_set():
        stats.counts = await queue.counts()
        stats.elapsed_s = time.time() - stats.started_at
        on_tick(stats)
        left = deadline - time.monotonic()
        if left <= 0:
            stats.stop_reason = "time limit reached"
            return
        with suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), min(config.tick_s, left))
    stats.stop_reason = "all jobs settled" if stats.all_settled else "interrupted"


def _stop_on_failure(stop: asyncio.Event) -> Callable[[asyncio.Task[None]], None]:
    def check(done: asyncio.Task[None]) -> None:
        if not done.cancelled() and done.exception() is not None:
            stop.set()  # the error is raised once everything has stopped

    return check


async def run_demo(
    config: DemoConfig,
    on_tick: Callable[[DemoStats], None] = lambda stats: None,
    stop: asyncio.Event | None = None,
    backend: BaseBackend | None = None,
) -> DemoStats:
    """Run until every planned job has settled, `config.duration_s` has passed, or `stop` is set.

    `backend` defaults to a fresh `InMemoryBackend`; the worker and producer share it.
    """
    stop = stop or asyncio.Event()
    queue = Queue(QUEUE, backend=backend or InMemoryBackend(), concurrency=config.concurrency)
    stats = DemoStats(planned=config.jobs)
    listeners = _subscribe(stats, stop)
    worker = queue.worker(shutdown_grace=2.0, handle_signals=False)
    working = asyncio.create_task(worker.run())
    plan = plan_jobs(config.jobs, random.Random(config.seed))
    producing = asyncio.create_task(_produce(queue, plan, stats))
    watching = asyncio.create_task(_watch(queue, stats, stop, config, on_tick))
    for helper in (working, producing):
        helper.add_done_callback(_stop_on_failure(stop))
    try:
        await watching
    finally:
        worker.stop()
        for helper in (producing, watching):
            helper.cancel()
        outcomes = await asyncio.gather(working, producing, watching, return_exceptions=True)
        for event, listener in listeners:
            event_emitter.off(event, listener)
        await event_emitter.drain()
    for outcome in outcomes:
        if isinstance(outcome, Exception):
            raise outcome
    stats.counts = await queue.counts()
    stats.elapsed_s = time.time() - stats.started_at
    return stats
