"""`asyncmq worker start`: work one or more queues in one process until stopped.

One `Worker` per queue, all on one event loop. Signals are handled here, not by each worker,
so that one SIGTERM stops them all: the first lets running jobs finish (the shutdown grace),
a second stops at once. If one worker fails, the others are stopped and the error is shown.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import click

from asyncmq.cli.common import (
    backend_options,
    check_reachable,
    import_settings_modules,
    metrics_endpoint,
    metrics_port_option,
    multiprocess_metrics_endpoint,
    resolve_backend,
    run,
    stop_signals,
    valid_queue_names,
)
from asyncmq.cli.failures import CommandFailure, ExitCode
from asyncmq.cli.processes import ProcessSupervisor, metrics_directory, remove_directory
from asyncmq.conf import settings
from asyncmq.conf.asyncmq_names import LOG_LEVELS
from asyncmq.core.event import Event, Payload
from asyncmq.core.publisher import EventPublisher
from asyncmq.core.seam import event_emitter
from asyncmq.queues import Queue
from asyncmq.registry import set_unknown_task_hint
from asyncmq.tasks import TASK_REGISTRY

if TYPE_CHECKING:
    from asyncmq.backends.base import BaseBackend
    from asyncmq.worker import Worker

__all__ = ["Supervisor", "worker_group"]


class Supervisor:
    """Runs workers side by side and stops them together."""

    def __init__(self, workers: list[Worker], *, announce: bool = True) -> None:
        self.workers = workers
        self.signals = 0
        self.announce = announce  # a child of --processes leaves it to its parent

    def stop(self, *, grace: bool = True) -> None:
        for worker in self.workers:
            worker.stop(grace=grace)

    def on_signal(self, sig: signal.Signals) -> None:
        self.signals += 1
        if self.signals == 1:
            if self.announce:
                click.echo(
                    f"{sig.name}: finishing running jobs, then stopping ({sig.name} again: stop now)",
                    err=True,
                )
            self.stop()
            return
        if self.announce:
            click.echo(f"{sig.name} again: stopping now, handing running jobs back", err=True)
        self.stop(grace=False)

    async def run(self) -> None:
        tasks = [asyncio.create_task(worker.run()) for worker in self.workers]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        self.stop()  # all stopped, or one failed: stop the rest
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        errors = [outcome for outcome in outcomes if isinstance(outcome, Exception)]
        if errors:
            raise errors[0]


@click.group("worker")
def worker_group() -> None:
    """Run workers."""


def _announce(payload: Payload) -> None:
    click.echo(
        f"Worker {payload['worker_id']} started on queue {payload['queue']!r} "
        f"(concurrency {payload['concurrency']}).",
        err=True,
    )


def _warn_without_tasks() -> None:
    """Said once the worker can start (backend read, port taken): one that cannot says only why."""
    if not TASK_REGISTRY:
        click.echo("Warning: no task is registered; pass --app MODULE to import your tasks.", err=True)


async def _serve(
    supervisor: Supervisor,
    backend: BaseBackend,
    metrics: tuple[int | None, str],
    publish_events: bool,
    child: bool,
) -> int:
    """Run the workers; a child of `--processes` leaves the start lines to its parent."""
    await check_reachable(backend)
    publisher = EventPublisher(backend) if publish_events else None
    if publisher is not None:
        publisher.start()
    try:
        async with metrics_endpoint(*metrics, backend):
            count = len(supervisor.workers)
            if not child:
                _warn_without_tasks()
                click.echo(
                    f"Starting {count} worker(s) on the {backend.name} backend. Ctrl-C to stop.", err=True
                )
                event_emitter.on(Event.WORKER_STARTED, _announce)
            try:
                with stop_signals(supervisor.on_signal):
                    await supervisor.run()
            finally:
                event_emitter.off(Event.WORKER_STARTED, _announce)
                await event_emitter.drain()
    finally:
        if publisher is not None:
            await publisher.stop()
        await backend.close()
    return sum(worker.processed for worker in supervisor.workers)


@worker_group.command("start")
@click.argument("queues", nargs=-1, required=True, metavar="QUEUE...", callback=valid_queue_names)
@click.option("--concurrency", "-c", type=click.IntRange(min=1), help="Jobs run at once, per queue.")
@metrics_port_option
@backend_options
@click.option("--burst", is_flag=True, help="Stop once nothing is left to run.")
@click.option(
    "--scan-interval", type=click.FloatRange(min=0, min_open=True), help="Scheduler wake-up, seconds."
)
@click.option("--rate-limit", type=click.IntRange(min=1), help="At most N job starts per --rate-interval.")
@click.option("--rate-interval", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True)
@click.option(
    "--publish-events",
    is_flag=True,
    help="Publish lifecycle events to the backend, for `asyncmq events tail` (Redis).",
)
@click.option(
    "--otlp-endpoint",
    metavar="URL",
    help="Export traces over OTLP/HTTP to this collector (http://host:4318); OTEL_* variables "
    "configure the rest (sampler, service name, headers).",
)
@click.option(
    "--processes",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Run this many worker processes (one per core), their metrics summed on --metrics-port.",
)
@click.option("--report-metrics", is_flag=True, hidden=True, help="Record metrics for a parent to serve.")
@click.option("--child", is_flag=True, hidden=True, help="A child of --processes: its parent announces it.")
@click.option(
    "--log-level",
    type=click.Choice(LOG_LEVELS),
    help="Default: the settings' log_level (ASYNCMQ_LOG_LEVEL), info unless set.",
)
def start(
    queues: tuple[str, ...],
    concurrency: int | None,
    metrics_port: int | None,
    metrics_host: str,
    backend: str | None,
    burst: bool,
    scan_interval: float | None,
    rate_limit: int | None,
    rate_interval: float,
    publish_events: bool,
    otlp_endpoint: str | None,
    processes: int,
    report_metrics: bool,
    child: bool,
    log_level: str | None,
) -> None:
    """Work QUEUE... in this process until SIGTERM/SIGINT (or, with --burst, until idle)."""
    # A child's lines say which process they come from: its parent's stderr mixes them all.
    where = " [process %(process)d]" if child else ""
    logging.basicConfig(
        level=(log_level or settings.log_level).upper(),
        format=f"%(asctime)s %(levelname)s{where} %(name)s: %(message)s",
    )
    import_settings_modules()
    store = resolve_backend(backend)
    if processes > 1:
        run(_supervise(processes, store, (metrics_port, metrics_host), tuple(dict.fromkeys(queues))))
        return
    if report_metrics:
        _report_metrics(store)
    workers = [
        Queue(
            name,
            backend=store,
            concurrency=concurrency,
            rate_limit=rate_limit,
            rate_interval=rate_interval,
            scan_interval=scan_interval,
        ).worker(burst=burst, handle_signals=False)
        for name in dict.fromkeys(queues)
    ]
    hint = set_unknown_task_hint("import the module that defines it: asyncmq worker start --app MODULE")
    try:
        with _traced(otlp_endpoint):
            supervisor = Supervisor(workers, announce=not child)
            processed = run(_serve(supervisor, store, (metrics_port, metrics_host), publish_events, child))
    finally:
        set_unknown_task_hint(hint)
    if not child:
        click.echo(f"Stopped {len(workers)} worker(s); {processed} job(s) processed.", err=True)


@contextmanager
def _traced(otlp_endpoint: str | None) -> Iterator[None]:
    """Trace jobs while inside when `--otlp-endpoint` is given; the spans still buffered are
    sent on the way out. opentelemetry is imported only then."""
    if otlp_endpoint is None:
        yield
        return
    try:
        from asyncmq.observability.tracing import exporting_traces
    except ImportError as exc:
        raise CommandFailure(
            ExitCode.CONFIGURATION,
            f"--otlp-endpoint needs the observability extra: pip install 'asyncmq[observability]' ({exc})",
        ) from None
    with exporting_traces(otlp_endpoint, link=settings.tracing_link):
        yield


def _report_metrics(backend: BaseBackend) -> None:
    """A child of `--processes`: record job metrics (into the shared directory the parent
    named in PROMETHEUS_MULTIPROC_DIR) for the parent to serve."""
    from asyncmq.observability import instrument

    instrument(backends=[backend], tracing=False)


async def _supervise(
    processes: int, backend: BaseBackend, metrics: tuple[int | None, str], queues: tuple[str, ...]
) -> None:
    port, host = metrics
    directory = metrics_directory() if port is not None else None
    supervisor = ProcessSupervisor(sys.argv[1:], processes, directory)
    names = ", ".join(repr(name) for name in queues)
    signals = 0

    def on_signal(sig: signal.Signals) -> None:
        nonlocal signals
        signals += 1
        if signals == 1:
            click.echo(
                f"{sig.name}: stopping {processes} worker processes; each finishes its running jobs "
                f"first (up to {settings.shutdown_grace_seconds:g} s; {sig.name} again: stop now)",
                err=True,
            )
        else:
            click.echo(
                f"{sig.name} again: stopping the worker processes now, handing running jobs back", err=True
            )
        supervisor.stop()  # a second time: each child takes its second SIGTERM as "now"

    try:
        await check_reachable(backend)  # before saying it starts, as the port below
        async with multiprocess_metrics_endpoint(port, host, backend, directory):
            _warn_without_tasks()
            click.echo(
                f"Starting {processes} worker processes on queue{'s' if len(queues) > 1 else ''} {names} "
                f"on the {backend.name} backend. Ctrl-C to stop.",
                err=True,
            )
            with stop_signals(on_signal):
                await supervisor.run(grace_s=60.0)
    finally:
        await backend.close()
        remove_directory(directory)
    click.echo(f"Stopped {processes} worker processes ({supervisor.restarts} restarted).", err=True)
