"""`asyncmq queue`: see every queue's counts, and pause, resume or drain one, or remove a schedule.

These are the operator's levers during an incident: stop a queue from being worked without
stopping its producers, start it again, or throw away a backlog that must not run.
"""

from __future__ import annotations

import time
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
    valid_queue_names,
)
from asyncmq.errors import AsyncMQError
from asyncmq.job import JobState
from asyncmq.queues import Queue

if TYPE_CHECKING:
    from asyncmq.backends.base import BaseBackend, QueueStats

__all__ = ["STATES", "queue_group", "queue_summaries", "summary_row"]

#: Display order of the per-state counts.
STATES = tuple(state.value for state in JobState)

_queue_argument = click.argument("name", callback=valid_queue_names)


@click.group("queue")
def queue_group() -> None:
    """List queues; pause, resume or drain one; remove a schedule."""


def _summary(name: str, stats: QueueStats) -> dict[str, Any]:
    workers = len(stats.workers) + len(stats.unreadable_workers)
    return {"name": name, "paused": stats.paused, "counts": stats.counts, "workers": workers}


async def queue_summaries(backend: BaseBackend) -> list[dict[str, Any]]:
    """One entry per queue: name, paused, counts per state and live workers."""
    now = time.time()
    return [_summary(name, await backend.stats(name, now)) for name in await backend.queues()]


def summary_row(summary: dict[str, Any]) -> list[object]:
    counts = summary["counts"]
    return [summary["name"], "paused" if summary["paused"] else "running"] + [
        counts.get(state, 0) for state in STATES
    ]


@queue_group.command("list")
@backend_options
@json_option
def list_queues(backend: str | None, as_json: bool) -> None:
    """Every queue the backend knows, with its jobs per state."""

    async def main() -> list[dict[str, Any]]:
        async with open_backend(backend) as store:
            return await queue_summaries(store)

    summaries = run(main())
    label = describe_backend(backend)
    if as_json:
        echo_json({"backend": label.url, "queues": summaries})
    else:
        _print_queues(label, summaries)


def _print_queues(label: BackendLabel, summaries: list[dict[str, Any]]) -> None:
    click.echo(label.line())
    if not summaries:
        click.echo("No queues.")
        return
    rows = [[*summary_row(s), s["workers"]] for s in summaries]
    print_table(["queue", "state", *STATES, "workers"], rows)


async def _require_queue(backend: BaseBackend, name: str, label: BackendLabel, hint: str = "") -> None:
    """Fail unless `backend.queues()` lists NAME: a mistyped name must not create a queue
    (pausing, resuming or draining one does on every backend) nor report a success."""
    if name not in await backend.queues():
        raise AsyncMQError(
            f"no queue {name!r} on the {backend.name} backend{label.note}; "
            f"`asyncmq queue list` lists the queues{hint}"
        )


async def _queue_info(backend: BaseBackend, name: str, label: BackendLabel) -> dict[str, Any]:
    # Checked first: on some backends merely reading a queue's stats creates it.
    await _require_queue(backend, name, label)
    stats = await backend.stats(name, time.time())
    info = _summary(name, stats)
    info["oldest_waiting_at"] = stats.oldest_waiting_at
    info["workers"] = [
        {key: getattr(w, key) for key in ("id", "host", "pid", "concurrency", "running", "heartbeat_at")}
        for w in stats.workers
    ] + [{"id": worker_id, "unreadable": True} for worker_id in stats.unreadable_workers]
    readable, unreadable = await backend.read_repeatables(name)
    info["repeatables"] = [
        {"key": r.key, "task": r.task, "cron": r.cron, "every_s": r.every_s, "next_run_at": r.next_run_at}
        for r in readable
    ]
    info["unreadable_repeatables"] = [{"key": key, "reason": reason} for key, reason in unreadable.items()]
    return info


def _print_info(info: dict[str, Any]) -> None:
    click.echo(f"Queue {info['name']}: {'paused' if info['paused'] else 'running'}")
    click.echo(f"Oldest waiting job since: {format_time(info['oldest_waiting_at'])}")
    print_table(list(STATES), [[info["counts"].get(state, 0) for state in STATES]], title="Jobs")
    workers = info["workers"]
    if workers:
        rows = [
            [w["id"], "?", "?", "unreadable"]
            if w.get("unreadable")
            else [w["id"], w["concurrency"], w["running"], format_time(w["heartbeat_at"])]
            for w in workers
        ]
        print_table(["worker", "concurrency", "running", "last heartbeat"], rows, title="Workers")
    else:
        click.echo("No live workers.")
    for rep in info["repeatables"]:
        schedule = rep["cron"] if rep["cron"] is not None else f"every {rep['every_s']}s"
        click.echo(  # the key is what `queue remove-repeatable NAME KEY` takes
            f"Repeatable {rep['key']}: {rep['task']} ({schedule}), next run {format_time(rep['next_run_at'])}"
        )
    for rep in info["unreadable_repeatables"]:
        click.echo(
            f"Unreadable repeatable {rep['key']}: {rep['reason']} "
            f"(asyncmq queue remove-repeatable {info['name']} {rep['key']} removes it)"
        )


@queue_group.command("info")
@_queue_argument
@backend_options
@json_option
def queue_info(name: str, backend: str | None, as_json: bool) -> None:
    """One queue: counts, oldest waiting job, live workers, repeatables (and those that
    cannot be read, with why)."""
    label = describe_backend(backend)

    async def main() -> dict[str, Any]:
        async with open_backend(backend) as store:
            return await _queue_info(store, name, label)

    info = run(main())
    if as_json:
        echo_json({**info, "backend": label.url})
    else:
        click.echo(label.line())
        _print_info(info)


@queue_group.command("pause")
@_queue_argument
@backend_options
@click.option(
    "--create",
    is_flag=True,
    help="Create NAME if it does not exist yet, paused: workers wait for a resume even once "
    "producers start adding (pause before deploying them).",
)
def pause(name: str, backend: str | None, create: bool) -> None:
    """Stop workers claiming from NAME; running jobs finish, producers may still add."""
    hint = f" (`asyncmq queue pause {name} --create` pauses it before its first job)"
    created = run(_set_paused(name, backend, paused=True, create=create, hint=hint))
    click.echo(f"Created queue {name!r} and paused it." if created else f"Paused queue {name!r}.")


@queue_group.command("resume")
@_queue_argument
@backend_options
def resume(name: str, backend: str | None) -> None:
    """Let workers claim from NAME again."""
    run(_set_paused(name, backend, paused=False))
    click.echo(f"Resumed queue {name!r}.")


async def _set_paused(
    name: str, backend: str | None, *, paused: bool, create: bool = False, hint: str = ""
) -> bool:
    """Set the flag of NAME, which must exist unless `create`; True when it was created."""
    async with open_backend(backend) as store:
        created = name not in await store.queues()
        if created and not create:
            await _require_queue(store, name, describe_backend(backend), hint)
        queue = Queue(name, backend=store)
        await (queue.pause() if paused else queue.resume())
        return created


@queue_group.command("drain")
@_queue_argument
@backend_options
@click.option(
    "--include-delayed",
    is_flag=True,
    help="Delete the delayed jobs too (a schedule keeps its next run: remove-repeatable stops it).",
)
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
def drain(name: str, backend: str | None, include_delayed: bool, yes: bool) -> None:
    """Delete every waiting job of NAME, and its delayed jobs too with --include-delayed
    (running and finished jobs stay)."""

    async def check() -> None:
        async with open_backend(backend) as store:
            await _require_queue(store, name, describe_backend(backend))

    run(check())  # before asking: a mistyped name fails without a question
    if not yes:
        click.confirm(_drain_question(name, include_delayed), abort=True)

    async def main() -> tuple[int, int]:
        async with open_backend(backend) as store:
            queue = Queue(name, backend=store)
            removed = await queue.drain(include_delayed=include_delayed)
            return removed, (await queue.counts())["delayed"]

    removed, kept = run(main())
    click.echo(_drained(name, include_delayed, removed, kept))


def _drain_question(name: str, include_delayed: bool) -> str:
    if include_delayed:
        return f"Delete every waiting and delayed job of queue {name!r}?"
    return (
        f"Delete every waiting job of queue {name!r} (delayed jobs stay: --include-delayed deletes them too)?"
    )


def _drained(name: str, include_delayed: bool, removed: int, kept: int) -> str:
    """What was deleted, and the delayed jobs that stayed: a drain that seems to have left
    jobs behind says which and why."""
    what = "waiting and delayed" if include_delayed else "waiting"
    line = f"Drained {removed} {what} job{'' if removed == 1 else 's'} from queue {name!r}"
    if not kept:
        return line + "."
    if include_delayed:
        schedules = "the next run of its schedules (remove-repeatable stops a schedule)"
        return f"{line}; kept {_delayed(kept)}: {schedules}."
    return f"{line}; kept {_delayed(kept)} (--include-delayed deletes those too)."


def _delayed(n: int) -> str:
    return f"{n} delayed job{'' if n == 1 else 's'}"


@queue_group.command("remove-repeatable")
@_queue_argument
@click.argument("key")
@backend_options
def remove_repeatable(name: str, key: str, backend: str | None) -> None:
    """Stop the schedule KEY of NAME (`queue info` lists the keys), readable or not."""

    async def main() -> bool:
        async with open_backend(backend) as store:
            await _require_queue(store, name, describe_backend(backend))
            return await Queue(name, backend=store).remove_repeatable(key)

    if not run(main()):
        raise AsyncMQError(f"no repeatable {key!r} in queue {name!r}")
    click.echo(f"Removed repeatable {key!r} from queue {name!r}.")
