"""`asyncmq info`: one screen answering "what is this deployment doing right now?".

The version, the backend, every queue with its counts, and the workers alive by heartbeat.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from asyncmq.cli.common import (
    BackendLabel,
    backend_options,
    describe_backend,
    echo_json,
    format_time,
    json_option,
    open_backend,
    print_table,
    run,
)
from asyncmq.cli.queue import STATES, queue_summaries, summary_row
from asyncmq.queues import Queue
from asyncmq.version import __version__

if TYPE_CHECKING:
    from asyncmq.backends.base import BaseBackend

__all__ = ["info"]


async def _workers(backend: BaseBackend, queues: list[str]) -> list[dict[str, Any]]:
    workers = []
    for name in queues:
        stats = await Queue(name, backend=backend).stats()
        workers += [
            {"id": worker_id, "queue": name, "unreadable": True} for worker_id in stats.unreadable_workers
        ]
        for w in stats.workers:
            workers.append(
                {
                    "id": w.id,
                    "queue": w.queue,
                    "host": w.host,
                    "pid": w.pid,
                    "concurrency": w.concurrency,
                    "running": w.running,
                    "started_at": w.started_at,
                    "heartbeat_at": w.heartbeat_at,
                }
            )
    return workers


async def _info(url: str | None) -> dict[str, Any]:
    async with open_backend(url) as backend:
        queues = await queue_summaries(backend)
        workers = await _workers(backend, [q["name"] for q in queues])
        return {"version": __version__, "backend": backend.name, "queues": queues, "workers": workers}


def _print(data: dict[str, Any], label: BackendLabel) -> None:
    click.echo(f"asyncmq {data['version']} on the {data['backend']} backend")
    click.echo(label.line())
    if data["queues"]:
        print_table(["queue", "state", *STATES], [summary_row(q) for q in data["queues"]], title="Queues")
    else:
        click.echo("No queues.")
    if data["workers"]:
        rows = [
            [w["id"], w["queue"], "?", "?", "unreadable"]
            if w.get("unreadable")
            else [w["id"], w["queue"], w["concurrency"], w["running"], format_time(w["heartbeat_at"])]
            for w in data["workers"]
        ]
        print_table(["worker", "queue", "concurrency", "running", "last heartbeat"], rows, title="Workers")
    else:
        click.echo("No live workers.")


@click.command("info")
@backend_options
@json_option
def info(backend: str | None, as_json: bool) -> None:
    """Version, backend, queues with their counts, and live workers."""
    data = run(_info(backend))
    label = describe_backend(backend)
    if as_json:  # by its URL, as the other commands' JSON; the text header keeps the short name
        echo_json({**data, "backend": label.url})
    else:
        _print(data, label)
