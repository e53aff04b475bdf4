"""The `asyncmq` command: the root group that every area (worker, queue, job, info, demo, bench) hangs off.

Each area lives in its own module; this one only assembles them, so `asyncmq --help` stays
cheap and an area can change without touching the others.
"""

from __future__ import annotations

import click

from asyncmq.cli.bench import bench
from asyncmq.cli.common import AsyncMQGroup
from asyncmq.cli.db import db_group
from asyncmq.cli.demo import demo
from asyncmq.cli.events import events_group
from asyncmq.cli.exporter import exporter
from asyncmq.cli.info import info
from asyncmq.cli.job import job_group
from asyncmq.cli.observability import observability_group
from asyncmq.cli.queue import queue_group
from asyncmq.cli.worker import worker_group
from asyncmq.version import __version__

__all__ = ["cli"]


@click.group(cls=AsyncMQGroup)
@click.version_option(__version__, "--version", "-V", prog_name="asyncmq")
def cli() -> None:
    """asyncmq: run workers, and inspect and control queues and jobs.

    The backend is --backend URL when given, else the settings (ASYNCMQ_BACKEND,
    ASYNCMQ_SETTINGS_MODULE). --app MODULE imports your tasks first.
    """


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
