"""`asyncmq job`: find a job, read everything stored about it, and retry, remove or cancel it.

Each action first reads the job, so an unknown id or a job in the wrong state gets a message
that says which, instead of a bare "nothing happened".
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click
import orjson

from asyncmq.cli.common import (
    BackendLabel,
    backend_options,
    describe_backend,
    echo_json,
    format_time,
    json_option,
    open_backend,
    print_table,
    queue_option,
    run,
)
from asyncmq.errors import AsyncMQError
from asyncmq.job import Job, JobState
from asyncmq.queues import Queue

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

__all__ = ["job_group", "job_summary", "progress_text"]

_STATE_CHOICES = ["all", *(state.value for state in JobState)]


@click.group("job")
def job_group() -> None:
    """List, inspect, retry, remove or cancel jobs."""


def job_summary(job: Job) -> dict[str, Any]:
    """The fields a listing shows; `job inspect --json` gives the whole record."""
    error = None if job.error is None else {"type": job.error["type"], "message": job.error["message"]}
    return {
        "id": job.id,
        "queue": job.queue,
        "task": job.task,
        "status": job.status.value,
        "attempt": job.attempt,
        "max_retries": job.max_retries,
        "priority": job.priority,
        "created_at": job.created_at,
        "finished_at": job.finished_at,
        "progress": job.progress,
        "due_at": job.delay_until,
        "error": error,
    }


def _percent(fraction: float) -> str:
    return f"{fraction * 100:.1f}".removesuffix(".0") + "%"


def progress_text(progress: Any) -> str | None:
    """Progress as an operator reads it. Tasks report any JSON value, so the common shapes
    are recognised: a float from 0 to 1 is a fraction ("25%"), any other number from 0 to 100
    a percentage, `{"step": 3, "of": 4}` a count ("3 of 4 (75%)"); text as it is, anything
    else as JSON, and no progress as None."""
    if progress is None or isinstance(progress, str):
        return progress
    if isinstance(progress, int | float) and not isinstance(progress, bool):
        if isinstance(progress, float) and 0 <= progress <= 1:
            return _percent(progress)
        if 0 <= progress <= 100:
            return _percent(progress / 100)
    if isinstance(progress, dict) and progress.keys() == {"step", "of"}:
        step, of = progress["step"], progress["of"]
        numbers = all(isinstance(n, int | float) and not isinstance(n, bool) for n in (step, of))
        if numbers and of > 0:
            return f"{step} of {of} ({_percent(step / of)})"
    return orjson.dumps(progress).decode()


async def _list_jobs(queue: Queue, state: str, limit: int) -> list[Job]:
    states = list(JobState) if state == "all" else [JobState(state)]
    found: list[Job] = []
    for each in states:
        if len(found) >= limit:
            break
        found += await queue.list_jobs(each, limit - len(found))
    return found


@job_group.command("list")
@queue_option
@click.option("--state", "-s", type=click.Choice(_STATE_CHOICES), default="all", show_default=True)
@click.option("--limit", "-n", type=click.IntRange(min=1), default=20, show_default=True)
@backend_options
@json_option
def list_jobs(queue_name: str, state: str, limit: int, backend: str | None, as_json: bool) -> None:
    """Jobs of a queue, by state (finished ones newest first)."""

    async def main() -> list[Job]:
        async with open_backend(backend) as store:
            return await _list_jobs(Queue(queue_name, backend=store), state, limit)

    jobs = run(main())
    label = describe_backend(backend)
    if as_json:
        echo_json({"backend": label.url, "jobs": [job_summary(job) for job in jobs]})
    else:
        _print_jobs(label, jobs, f"{'' if state == 'all' else state + ' '}jobs in queue {queue_name!r}")


def _print_jobs(label: BackendLabel, jobs: list[Job], what: str) -> None:
    """`what`: "failed jobs in queue 'mail'", said when there are none."""
    click.echo(label.line())
    if not jobs:
        click.echo(f"No {what}.")
        return
    # A due time only means something for delayed jobs, progress for active ones: each
    # column shows when the listing holds such a job.
    due = any(job.status is JobState.DELAYED for job in jobs)
    progress = any(job.status is JobState.ACTIVE for job in jobs)
    columns = ["id", "task", "state", "attempt", "created"]
    columns += ["due"] * due + ["progress"] * progress + ["error"]
    rows = []
    for job in jobs:
        row: list[object] = [job.id, job.task, job.status.value, job.attempt, format_time(job.created_at)]
        if due:
            row.append(format_time(job.delay_until) if job.status is JobState.DELAYED else None)
        if progress:
            row.append(progress_text(job.progress) if job.status is JobState.ACTIVE else None)
        rows.append([*row, _error_text(job)])
    print_table(columns, rows)


def _error_text(job: Job) -> str | None:
    return None if job.error is None else f"{job.error['type']}: {job.error['message']}"


def _record(job: Job) -> dict[str, Any]:
    record = job.to_record()
    record["status"] = job.status.value
    return record


def _print_job(job: Job) -> None:
    rows: list[tuple[str, object]] = [
        ("queue", job.queue),
        ("task", job.task),
        ("state", job.status.value),
        ("attempt", f"{job.attempt} of {job.max_retries + 1}"),
        ("priority", job.priority),
        ("args", job.args),
        ("kwargs", job.kwargs),
    ]
    rows += [(name, format_time(at)) for name, at in job.timestamps().items()]
    rows += [
        ("worker", job.worker_id),
        ("progress", progress_text(job.progress)),
        ("result", job.result),
        ("error", _error_text(job)),
    ]
    print_table(["field", "value"], rows, title=f"Job {job.id}")
    if job.error is not None and job.error.get("traceback"):
        click.echo(job.error["traceback"].rstrip())


@job_group.command("inspect")
@click.argument("job_id")
@queue_option
@backend_options
@json_option
def inspect_job(job_id: str, queue_name: str, backend: str | None, as_json: bool) -> None:
    """Everything stored about one job: arguments, timestamps, result or error."""

    async def main() -> Job:
        async with open_backend(backend) as store:
            return await Queue(queue_name, backend=store).get_job(job_id)

    job = run(main())
    if as_json:
        echo_json(_record(job))
    else:
        _print_job(job)


def _act(
    backend: str | None,
    queue_name: str,
    job_id: str,
    action: Callable[[Queue], Callable[[str], Awaitable[bool]]],
    refusal: Callable[[Job], str],
) -> None:
    """Read the job (unknown id: error), apply `action`, and explain a refusal by its state."""

    async def main() -> None:
        async with open_backend(backend) as store:
            queue = Queue(queue_name, backend=store)
            await queue.get_job(job_id)
            if not await action(queue)(job_id):
                raise AsyncMQError(refusal(await queue.get_job(job_id)))

    run(main())


@job_group.command("retry")
@click.argument("job_id")
@queue_option
@backend_options
def retry_job(job_id: str, queue_name: str, backend: str | None) -> None:
    """Send a failed, expired or cancelled job back to waiting, with a fresh attempt count."""
    _act(
        backend,
        queue_name,
        job_id,
        lambda queue: queue.retry_job,
        lambda job: (
            f"job {job.id!r} is {job.status.value}: only failed, expired or cancelled jobs can be retried"
        ),
    )
    click.echo(f"Job {job_id!r} is waiting again.")


@job_group.command("remove")
@click.argument("job_id")
@queue_option
@backend_options
def remove_job(job_id: str, queue_name: str, backend: str | None) -> None:
    """Delete a job that is not running."""
    _act(
        backend,
        queue_name,
        job_id,
        lambda queue: queue.remove_job,
        lambda job: f"job {job.id!r} is {job.status.value}: cancel it before removing it",
    )
    click.echo(f"Removed job {job_id!r}.")


@job_group.command("cancel")
@click.argument("job_id")
@queue_option
@backend_options
def cancel_job(job_id: str, queue_name: str, backend: str | None) -> None:
    """Cancel a waiting, delayed or running job (a running attempt stops at its next heartbeat)."""
    _act(
        backend,
        queue_name,
        job_id,
        lambda queue: queue.cancel,
        lambda job: f"job {job.id!r} has already finished ({job.status.value}): nothing to cancel",
    )
    click.echo(f"Cancelled job {job_id!r}.")
