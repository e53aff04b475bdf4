"""`asyncmq job list|inspect|retry|remove|cancel` against a pre-populated in-memory backend."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from asyncmq.backends.memory import InMemoryBackend
from asyncmq.cli.common import format_time
from asyncmq.job import Job
from asyncmq.queues import Queue
from tests.cli.helpers import call, invoke, table_rows


async def _populate(backend: InMemoryBackend) -> None:
    """mail: f1 failed (after running), w1 and w2 waiting, d1 delayed."""
    mail = Queue("mail", backend=backend)
    await mail.add("clitest.explode", job_id="f1")
    assert await mail.worker().process()
    await mail.add("clitest.greet", ["ada"], job_id="w1")
    await mail.add("clitest.greet", ["bob"], job_id="w2", priority=1)
    await mail.add("clitest.greet", ["cy"], job_id="d1", delay=3600)


def _stored(backend: InMemoryBackend, job_id: str) -> Job:
    job = call(backend.get_job("mail", job_id))
    assert job is not None
    return job


def _summary(job: Job, **changes: Any) -> dict[str, Any]:
    return {
        "id": job.id,
        "queue": "mail",
        "task": job.task,
        "status": job.status.value,
        "attempt": job.attempt,
        "max_retries": 0,
        "priority": job.priority,
        "created_at": job.created_at,
        "finished_at": job.finished_at,
        "progress": None,
        "due_at": job.delay_until,
        "error": None,
        **changes,
    }


def test_job_list_json_gives_the_jobs_of_one_state(backend: InMemoryBackend) -> None:
    call(_populate(backend))
    result = invoke("job", "list", "--queue", "mail", "--state", "waiting", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "backend": "memory://",
        "jobs": [_summary(_stored(backend, "w1")), _summary(_stored(backend, "w2"))],
    }


def test_job_list_without_a_state_walks_every_state_up_to_the_limit(backend: InMemoryBackend) -> None:
    call(_populate(backend))
    result = invoke("job", "list", "-q", "mail", "--limit", "3", "--json")
    assert result.exit_code == 0, result.output
    assert [(job["id"], job["status"]) for job in json.loads(result.stdout)["jobs"]] == [
        ("w1", "waiting"),
        ("w2", "waiting"),
        ("d1", "delayed"),
    ]


def test_job_list_json_carries_the_error_of_a_failed_job(backend: InMemoryBackend) -> None:
    call(_populate(backend))
    result = invoke("job", "list", "-q", "mail", "-s", "failed", "--json")
    assert result.exit_code == 0, result.output
    failed = _stored(backend, "f1")
    assert json.loads(result.stdout)["jobs"] == [
        _summary(failed, status="failed", attempt=1, error={"type": "RuntimeError", "message": "boom"})
    ]


def test_job_list_table_shows_id_task_state_attempt_and_error(backend: InMemoryBackend) -> None:
    call(_populate(backend))
    result = invoke("job", "list", "-q", "mail", "-s", "failed")
    assert result.exit_code == 0, result.output
    header, row = table_rows(result.stdout)
    assert header == ["id", "task", "state", "attempt", "created", "error"]
    assert row[:4] + row[5:] == ["f1", "clitest.explode", "failed", "1", "RuntimeError: boom"]


def test_job_list_says_so_when_a_state_has_no_jobs(backend: InMemoryBackend) -> None:
    call(_populate(backend))
    result = invoke("job", "list", "-q", "mail", "-s", "cancelled")
    assert (result.exit_code, result.stdout) == (
        0,
        "Backend: memory://\nNo cancelled jobs in queue 'mail'.\n",
    )


def test_job_inspect_json_gives_the_whole_stored_record(backend: InMemoryBackend) -> None:
    call(_populate(backend))
    result = invoke("job", "inspect", "d1", "--queue", "mail", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == _stored(backend, "d1").to_record()


def test_job_inspect_shows_a_failed_jobs_error_and_traceback(backend: InMemoryBackend) -> None:
    call(_populate(backend))
    result = invoke("job", "inspect", "f1", "-q", "mail")
    assert result.exit_code == 0, result.output
    rows = dict((row[0], row[1]) for row in table_rows(result.stdout) if len(row) == 2)
    assert (rows["task"], rows["state"], rows["attempt"], rows["error"]) == (
        "clitest.explode",
        "failed",
        "1 of 1",
        "RuntimeError: boom",
    )
    assert result.stdout.rstrip().endswith('raise RuntimeError("boom")\nRuntimeError: boom')


def test_inspecting_an_unknown_job_fails_with_a_clear_message() -> None:
    result = invoke("job", "inspect", "nope", "-q", "mail")
    assert (result.exit_code, result.output) == (1, "Error: no job 'nope' in queue 'mail'\n")


def test_a_job_command_without_a_queue_is_a_usage_error() -> None:
    result = invoke("job", "inspect", "f1")
    assert result.exit_code == 2
    assert "Missing option '--queue' / '-q'." in result.output


def test_job_retry_sends_a_failed_job_back_to_waiting(backend: InMemoryBackend) -> None:
    call(_populate(backend))
    result = invoke("job", "retry", "f1", "-q", "mail")
    assert (result.exit_code, result.output) == (0, "Job 'f1' is waiting again.\n")
    job = _stored(backend, "f1")
    assert (job.status, job.attempt, job.error) == ("waiting", 0, None)


def test_retrying_a_waiting_job_is_refused_naming_its_state(backend: InMemoryBackend) -> None:
    call(_populate(backend))
    result = invoke("job", "retry", "w1", "-q", "mail")
    assert result.exit_code == 1
    assert result.output == (
        "Error: job 'w1' is waiting: only failed, expired or cancelled jobs can be retried\n"
    )


def test_job_remove_deletes_a_job_that_is_not_running(backend: InMemoryBackend) -> None:
    call(_populate(backend))
    result = invoke("job", "remove", "f1", "-q", "mail")
    assert (result.exit_code, result.output) == (0, "Removed job 'f1'.\n")
    assert call(backend.get_job("mail", "f1")) is None


def test_removing_a_running_job_is_refused(backend: InMemoryBackend) -> None:
    call(_populate(backend))
    claimed = call(backend.claim("mail", "test-worker", 1, 30.0, time.time(), None))
    assert [job.id for job in claimed.jobs] == ["w2"]
    result = invoke("job", "remove", "w2", "-q", "mail")
    assert (result.exit_code, result.output) == (
        1,
        "Error: job 'w2' is active: cancel it before removing it\n",
    )


def test_job_cancel_cancels_a_delayed_job(backend: InMemoryBackend) -> None:
    call(_populate(backend))
    result = invoke("job", "cancel", "d1", "-q", "mail")
    assert (result.exit_code, result.output) == (0, "Cancelled job 'd1'.\n")
    assert _stored(backend, "d1").status == "cancelled"


def test_cancelling_a_finished_job_is_refused(backend: InMemoryBackend) -> None:
    call(_populate(backend))
    result = invoke("job", "cancel", "f1", "-q", "mail")
    assert result.exit_code == 1
    assert result.output == "Error: job 'f1' has already finished (failed): nothing to cancel\n"


def test_acting_on_an_unknown_job_fails_with_a_clear_message(backend: InMemoryBackend) -> None:
    call(_populate(backend))
    for action in ("retry", "remove", "cancel"):
        result = invoke("job", action, "ghost", "-q", "mail")
        assert (result.exit_code, result.output) == (1, "Error: no job 'ghost' in queue 'mail'\n"), action


def test_job_inspect_of_a_damaged_record_says_which_field_is_wrong(backend: InMemoryBackend) -> None:
    call(_populate(backend))
    backend._stores["mail"].jobs["w1"].priority = "high"  # type: ignore[assignment]
    result = invoke("job", "inspect", "w1", "-q", "mail")
    assert result.exit_code == 1
    assert "job record 'w1' has a malformed priority: 'high'" in result.output
    assert "Traceback" not in result.output


def _claim_with_progress(backend: InMemoryBackend, progress: Any) -> Job:
    """w2 claimed by a worker that stored `progress` for it."""
    (job,) = call(backend.claim("mail", "test-worker", 1, 30.0, time.time(), None)).jobs
    assert job.id == "w2"
    job.progress = progress
    assert call(backend.save_progress(job))
    return job


def test_job_list_of_delayed_jobs_shows_when_each_is_due(backend: InMemoryBackend) -> None:
    call(_populate(backend))
    result = invoke("job", "list", "-q", "mail", "-s", "delayed")
    assert result.exit_code == 0, result.output
    header, row = table_rows(result.stdout)
    assert header == ["id", "task", "state", "attempt", "created", "due", "error"]
    due = _stored(backend, "d1").delay_until
    assert (row[0], row[5]) == ("d1", format_time(due))


def test_job_list_of_active_jobs_shows_their_progress(backend: InMemoryBackend) -> None:
    call(_populate(backend))
    _claim_with_progress(backend, 0.25)
    result = invoke("job", "list", "-q", "mail", "-s", "active")
    assert result.exit_code == 0, result.output
    header, row = table_rows(result.stdout)
    assert header == ["id", "task", "state", "attempt", "created", "progress", "error"]
    assert (row[0], row[5]) == ("w2", "25%")


def test_job_list_of_every_state_has_both_columns_filled_where_they_apply(backend: InMemoryBackend) -> None:
    call(_populate(backend))
    _claim_with_progress(backend, 0.5)
    result = invoke("job", "list", "-q", "mail")
    assert result.exit_code == 0, result.output
    header, *rows = table_rows(result.stdout)
    assert header == ["id", "task", "state", "attempt", "created", "due", "progress", "error"]
    cells = {row[0]: (row[5], row[6]) for row in rows}
    assert cells == {
        "w1": ("-", "-"),
        "d1": (format_time(_stored(backend, "d1").delay_until), "-"),
        "w2": ("-", "50%"),
        "f1": ("-", "-"),
    }


@pytest.mark.parametrize(
    ("progress", "shown"),
    [
        (0.5, "50%"),
        (0.125, "12.5%"),
        (1.0, "100%"),
        (0, "0%"),
        (40, "40%"),
        ({"step": 3, "of": 4}, "3 of 4 (75%)"),
        ("copying", "copying"),
        ({"stage": "copy"}, '{"stage":"copy"}'),
    ],
)
def test_job_inspect_shows_progress_as_a_percentage(
    backend: InMemoryBackend, progress: Any, shown: str
) -> None:
    call(_populate(backend))
    _claim_with_progress(backend, progress)
    result = invoke("job", "inspect", "w2", "-q", "mail")
    assert result.exit_code == 0, result.output
    rows = dict((row[0], row[1]) for row in table_rows(result.stdout) if len(row) == 2)
    assert rows["progress"] == shown
    raw = invoke("job", "inspect", "w2", "-q", "mail", "--json")
    assert json.loads(raw.stdout)["progress"] == progress  # the stored value, as stored
