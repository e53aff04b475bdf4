"""The `asyncmq` command: the root group that every area (worker, queue, job, info, demo, bench) hangs off.

Each area lives in its own module; this one only assembles them, so `asyncmq --help` stays
cheap and an area can change without touching the others.
"""

from __future__ import annotations

import click

from asyncmq.cli.bench import bench
from asyncmq.cli.common import AsyncMQGroup, set_debug
from asyncmq.cli.db import db_group
from asyncmq.cli.demo import demo
from asyncmq.cli.events import events_group
from asyncmq.cli.exporter import exporter
from asyncmq.cli.failures import DEBUG_ENV, EXIT_CODES_HELP
from asyncmq.cli.info import info
from asyncmq.cli.job import job_group
from asyncmq.cli.observability import observability_group
from asyncmq.cli.queue import queue_group
from asyncmq.cli.worker import worker_group
from asyncmq.version import __version__

__all__ = ["cli"]


@click.group(cls=AsyncMQGroup, epilog=EXIT_CODES_HELP)
@click.version_option(__version__, "--version", "-V", prog_name="asyncmq")
@click.option(
    "--debug",
    is_flag=True,
    help=f"On a failure, print the traceback as well as the one-line error (also: {DEBUG_ENV}=1).",
)
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """asyncmq: run workers, and inspect and control queues and jobs.

    The backend is --backend URL when given, else the settings (ASYNCMQ_BACKEND,
    ASYNCMQ_SETTINGS_MODULE). --app MODULE imports your tasks first.
    """
    set_debug(ctx, debug)


cli.add_command(worker_group)
cli.add_command(queue_group)
cli.add_command(job_group)
cli.add_command(info)
cli.add_command(demo)
cli.add_command(events_group)
cli.add_command(exporter)
cli.add_command(observability_group)
cli.add_command(bench)
cli.add_command(db_group)
