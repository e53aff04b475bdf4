"""`asyncmq queue list|info|pause|resume|drain|remove-repeatable` on a pre-populated in-memory backend."""

from __future__ import annotations

import json
import time

import pytest

from asyncmq.backends.memory import InMemoryBackend
from asyncmq.queues import Queue
from asyncmq.schedule import Repeatable
from tests.cli.helpers import call, invoke, table_rows

ZERO = {
    "waiting": 0,
    "delayed": 0,
    "active": 0,
    "completed": 0,
    "failed": 0,
    "expired": 0,
    "cancelled": 0,
    "blocked": 0,
}


async def _populate(backend: InMemoryBackend) -> None:
    mail = Queue("mail", backend=backend)
    await mail.add("clitest.greet", ["ada"], job_id="w1")
    await mail.add("clitest.greet", ["bob"], job_id="w2")
    await mail.add("clitest.greet", ["cy"], job_id="d1", delay=3600)
    reports = Queue("reports", backend=backend)
    await reports.add("clitest.greet", ["dee"], job_id="r1")
    await reports.pause()


def test_queue_list_json_gives_counts_pause_state_and_workers_per_queue(backend: InMemoryBackend) -> None:
    call(_populate(backend))
    result = invoke("queue", "list", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "backend": "memory://",
        "queues": [
            {"name": "mail", "paused": False, "counts": {**ZERO, "waiting": 2, "delayed": 1}, "workers": 0},
            {"name": "reports", "paused": True, "counts": {**ZERO, "waiting": 1}, "workers": 0},
        ],
    }


def test_queue_list_table_has_one_row_per_queue(backend: InMemoryBackend) -> None:
    call(_populate(backend))
    result = invoke("queue", "list")
    assert result.exit_code == 0, result.output
    assert table_rows(result.stdout) == [
        [
            "queue",
            "state",
            "waiting",
            "delayed",
            "active",
            "completed",
            "failed",
            "expired",
            "cancelled",
            "blocked",
            "workers",
        ],
        ["mail", "running", "2", "1", "0", "0", "0", "0", "0", "0", "0"],
        ["reports", "paused", "1", "0", "0", "0", "0", "0", "0", "0", "0"],
    ]


def test_queue_list_says_so_when_there_are_no_queues(backend: InMemoryBackend) -> None:
    result = invoke("queue", "list")
    assert (result.exit_code, result.stdout) == (0, "Backend: memory://\nNo queues.\n")


def test_queue_info_json_adds_the_oldest_waiting_job_and_the_repeatables(backend: InMemoryBackend) -> None:
    call(_populate(backend))
    key = call(Queue("mail", backend=backend).add_repeatable("clitest.greet", every=60, args=["eve"]))
    (rep,) = call(backend.repeatables("mail"))
    first = call(backend.get_job("mail", "w1"))
    assert first is not None
    result = invoke("queue", "info", "mail", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "backend": "memory://",
        "name": "mail",
        "paused": False,
        "counts": {**ZERO, "waiting": 2, "delayed": 2},
        "oldest_waiting_at": first.created_at,
        "workers": [],
        "repeatables": [
            {
                "key": key,
                "task": "clitest.greet",
                "cron": None,
                "every_s": 60.0,
                "next_run_at": rep.next_run_at,
            }
        ],
        "unreadable_repeatables": [],
    }


def test_queue_info_human_output_names_the_state_and_the_counts(backend: InMemoryBackend) -> None:
    call(_populate(backend))
    result = invoke("queue", "info", "reports")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("Backend: memory://\nQueue reports: paused\n")
    assert table_rows(result.stdout)[1] == ["1", "0", "0", "0", "0", "0", "0", "0"]
    assert "No live workers." in result.stdout


def test_queue_info_on_an_unknown_queue_fails_clearly(backend: InMemoryBackend) -> None:
    call(_populate(backend))
    result = invoke("queue", "info", "nope")
    assert (result.exit_code, result.output) == (1, f"Error: {_no_queue('nope')}\n")
    assert call(backend.queues()) == ["mail", "reports"]


def _no_queue(name: str) -> str:
    return f"no queue {name!r} on the memory backend; `asyncmq queue list` lists the queues"


@pytest.mark.parametrize(
    "command",
    [
        ["pause", "typo1"],
        ["resume", "typo1"],
        ["drain", "typo1", "--yes"],
        ["drain", "typo1"],  # refused before the question
        ["remove-repeatable", "typo1", "some-key"],
    ],
)
def test_queue_commands_refuse_a_queue_that_does_not_exist_and_create_none(
    backend: InMemoryBackend, command: list[str]
) -> None:
    call(_populate(backend))
    result = invoke("queue", *command)
    hint = " (`asyncmq queue pause typo1 --create` pauses it before its first job)"
    hint = hint if command[0] == "pause" else ""
    assert (result.exit_code, result.output) == (1, f"Error: {_no_queue('typo1')}{hint}\n")
    assert call(backend.queues()) == ["mail", "reports"]


def test_pause_create_pauses_a_queue_before_its_first_job_and_says_it_created_it(
    backend: InMemoryBackend,
) -> None:
    result = invoke("queue", "pause", "reports", "--create")
    assert (result.exit_code, result.output) == (0, "Created queue 'reports' and paused it.\n")
    assert call(backend.queues()) == ["reports"]
    assert call(Queue("reports", backend=backend).is_paused()) is True
    listed = invoke("queue", "list")
    assert table_rows(listed.stdout)[1][:2] == ["reports", "paused"]


def test_pause_create_on_a_queue_that_exists_only_pauses_it(backend: InMemoryBackend) -> None:
    call(_populate(backend))
    result = invoke("queue", "pause", "mail", "--create")
    assert (result.exit_code, result.output) == (0, "Paused queue 'mail'.\n")
    assert call(Queue("mail", backend=backend).is_paused()) is True


def test_pause_and_resume_set_the_stored_flag(backend: InMemoryBackend) -> None:
    call(_populate(backend))
    paused = invoke("queue", "pause", "mail")
    assert (paused.exit_code, paused.output) == (0, "Paused queue 'mail'.\n")
    assert call(Queue("mail", backend=backend).is_paused()) is True
    resumed = invoke("queue", "resume", "mail")
    assert (resumed.exit_code, resumed.output) == (0, "Resumed queue 'mail'.\n")
    assert call(Queue("mail", backend=backend).is_paused()) is False


def test_drain_with_yes_deletes_the_waiting_jobs_of_that_queue_and_says_how_many_delayed_stay(
    backend: InMemoryBackend,
) -> None:
    call(_populate(backend))
    result = invoke("queue", "drain", "mail", "--yes")
    assert (result.exit_code, result.output) == (
        0,
        "Drained 2 waiting jobs from queue 'mail'; kept 1 delayed job "
        "(--include-delayed deletes those too).\n",
    )
    assert call(Queue("mail", backend=backend).counts()) == {**ZERO, "delayed": 1}
    assert call(Queue("reports", backend=backend).counts())["waiting"] == 1


def test_drain_include_delayed_deletes_the_delayed_jobs_too(backend: InMemoryBackend) -> None:
    call(_populate(backend))
    result = invoke("queue", "drain", "mail", "--include-delayed", "--yes")
    assert (result.exit_code, result.output) == (0, "Drained 3 waiting and delayed jobs from queue 'mail'.\n")
    assert call(Queue("mail", backend=backend).counts()) == ZERO


def test_drain_include_delayed_keeps_the_next_run_of_each_schedule_and_says_so(
    backend: InMemoryBackend,
) -> None:
    call(_populate(backend))
    key = call(Queue("mail", backend=backend).add_repeatable("clitest.greet", every=60, args=["eve"]))
    result = invoke("queue", "drain", "mail", "--include-delayed", "--yes")
    assert (result.exit_code, result.output) == (
        0,
        "Drained 3 waiting and delayed jobs from queue 'mail'; kept 1 delayed job: the next run of "
        "its schedules (remove-repeatable stops a schedule).\n",
    )
    [pending] = call(Queue("mail", backend=backend).list_jobs("delayed"))
    assert pending.repeat_key == key


def test_drain_asks_first_and_a_no_keeps_every_job(backend: InMemoryBackend) -> None:
    call(_populate(backend))
    result = invoke("queue", "drain", "mail", input="n\n")
    assert result.exit_code == 1
    assert result.output == (
        "Delete every waiting job of queue 'mail' (delayed jobs stay: --include-delayed deletes them "
        "too)? [y/N]: n\nAborted!\n"
    )
    assert call(Queue("mail", backend=backend).counts())["waiting"] == 2


def test_drain_include_delayed_asks_about_the_delayed_jobs_too(backend: InMemoryBackend) -> None:
    call(_populate(backend))
    result = invoke("queue", "drain", "mail", "--include-delayed", input="n\n")
    assert result.exit_code == 1
    assert result.output.startswith("Delete every waiting and delayed job of queue 'mail'? [y/N]: n\n")
    assert call(Queue("mail", backend=backend).counts())["delayed"] == 1


def test_drain_confirmed_at_the_prompt_deletes_the_jobs(backend: InMemoryBackend) -> None:
    call(_populate(backend))
    result = invoke("queue", "drain", "reports", input="y\n")
    assert result.exit_code == 0, result.output
    assert result.output.endswith("Drained 1 waiting job from queue 'reports'.\n")


def _store_unreadable(backend: InMemoryBackend) -> str:
    """A schedule of `mail` stored with neither cron nor every, as a damaged record reads."""
    rep = Repeatable("mail", "clitest.greet", every_s=30, next_run_at=time.time() + 30)
    rep.every_s = None
    assert call(backend.add_repeatable(rep))
    return rep.key


def test_queue_info_lists_an_unreadable_repeatable_with_why_and_how_to_remove_it(
    backend: InMemoryBackend,
) -> None:
    call(_populate(backend))
    key = _store_unreadable(backend)
    reason = (
        f"schedule {key!r} is unreadable: repeatable 'clitest.greet' needs exactly one of cron= or every=, "
        "got cron=None, every=None"
    )

    result = invoke("queue", "info", "mail", "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert (info["repeatables"], info["unreadable_repeatables"]) == ([], [{"key": key, "reason": reason}])

    result = invoke("queue", "info", "mail")
    assert result.exit_code == 0, result.output
    assert (
        f"Unreadable repeatable {key}: {reason} (asyncmq queue remove-repeatable mail {key} removes it)"
        in result.stdout.replace("\n", " ")
    )


def test_queue_remove_repeatable_removes_a_schedule_readable_or_not(backend: InMemoryBackend) -> None:
    call(_populate(backend))
    good = call(Queue("mail", backend=backend).add_repeatable("clitest.greet", every=60, args=["ada"]))
    bad = _store_unreadable(backend)

    for key in (bad, good):
        result = invoke("queue", "remove-repeatable", "mail", key)
        assert (result.exit_code, result.output) == (0, f"Removed repeatable {key!r} from queue 'mail'.\n")

    assert call(backend.read_repeatables("mail")) == ([], {})
    counts = call(Queue("mail", backend=backend).counts())
    assert (counts["delayed"], counts["cancelled"]) == (1, 1)  # the good one's pending occurrence
    result = invoke("queue", "remove-repeatable", "mail", bad)
    assert (result.exit_code, result.output) == (1, f"Error: no repeatable {bad!r} in queue 'mail'\n")
