"""`asyncmq events tail QUEUE`: follow a queue's lifecycle events live from another process.

Workers publish events when started with `--publish-events` (Redis backend); this command
reads them from the backend as they arrive, one line each, or one JSON object per line.
"""

from __future__ import annotations

import time
from contextlib import suppress
from typing import Any

import click
import orjson

from asyncmq.cli.common import backend_options, json_option, open_backend, run, valid_queue_names

__all__ = ["events_group"]


@click.group("events")
def events_group() -> None:
    """Follow lifecycle events published by workers (--publish-events)."""


def _line(name: str, payload: dict[str, Any]) -> str:
    moment = time.strftime("%H:%M:%S", time.localtime(payload.get("at") or time.time()))
    detail = f" attempt {payload['attempt']}" if "attempt" in payload else ""
    if "error" in payload:
        detail += f" {payload['error']['type']}: {payload['error']['message']}"
    subject = payload.get("id") or payload.get("worker_id", "")
    return f"{moment} {name:<16} {payload.get('task', ''):<30} {subject}{detail}"


async def _tail(
    url: str | None, queue: str, as_json: bool, limit: int | None, timeout_s: float | None
) -> int:
    shown, position = 0, "$"
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    async with open_backend(url) as backend:
        while limit is None or shown < limit:
            left = 1.0 if deadline is None else min(1.0, deadline - time.monotonic())
            if left <= 0:
                break
            for entry_id, name, payload in await backend.read_events(queue, position, left):
                if limit is not None and shown >= limit:
                    break
                position = entry_id
                click.echo(
                    orjson.dumps({"event": name, **payload}).decode() if as_json else _line(name, payload)
                )
                shown += 1
    return shown


@events_group.command("tail")
@click.argument("queue", callback=valid_queue_names)
@backend_options
@json_option
@click.option("--limit", "-n", type=click.IntRange(min=1), help="Stop after this many events.")
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=0), help="Stop after this many seconds.")
def tail(queue: str, backend: str | None, as_json: bool, limit: int | None, timeout_s: float | None) -> None:
    """Print QUEUE's events as they happen, until Ctrl-C or SIGTERM (or --limit / --timeout)."""
    with suppress(KeyboardInterrupt):  # how a tail is meant to end: exit 0, no "Aborted!"
        run(_tail(backend, queue, as_json, limit, timeout_s))
