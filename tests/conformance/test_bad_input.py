"""Bad input on every backend: each case is refused with an error naming the problem and
nothing stored, or normalised as the README says (an `IntEnum` priority is stored as its
int, a `timedelta` as seconds)."""

from __future__ import annotations

import enum
import logging
import re
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

import asyncmq
from asyncmq import JobState, Queue
from asyncmq.backends.base import BaseBackend
from asyncmq.errors import (
    InvalidJobError,
    InvalidScheduleError,
    PayloadTooLargeError,
    SerializationError,
)
from asyncmq.schedule import Repeatable
from tests.conformance.support import EventRecorder, StartWorker, counts

NAN, INF = float("nan"), float("inf")
HUGE = "x" * 10_000_000


@asyncmq.task
async def echo(*args: Any, **kwargs: Any) -> list[Any]:
    return [list(args), kwargs]


ECHO = echo.name


class Level(enum.IntEnum):
    HIGH = 1


async def assert_nothing_stored(queue: Queue, events: EventRecorder) -> None:
    assert await queue.counts() == counts()
    assert await queue.repeatables() == []
    assert events.records == []


def _duration_cases(name: str, *, zero_ok: bool) -> list[Any]:
    """Every wrong value of a duration option, with the message that names it."""
    finite = f"{name} must be a finite number of seconds"
    positive = f"{name} must be {'>=' if zero_ok else '>'} 0 seconds"
    cases = [
        pytest.param({name: NAN}, finite, id=f"{name}-nan"),
        pytest.param({name: INF}, finite, id=f"{name}-inf"),
        pytest.param({name: -INF}, finite, id=f"{name}--inf"),
        pytest.param({name: -1}, positive, id=f"{name}-negative"),
        pytest.param({name: timedelta(seconds=-3)}, positive, id=f"{name}-negative-td"),
        pytest.param(
            {name: "5"}, f"{name} must be a number of seconds or a timedelta, got '5'", id=f"{name}-str"
        ),
        pytest.param(
            {name: True}, f"{name} must be a number of seconds or a timedelta, got True", id=f"{name}-bool"
        ),
        pytest.param({name: 1e10}, f"{name} must be at most 1000000000 seconds", id=f"{name}-too-long"),
    ]
    if not zero_ok:
        cases.append(pytest.param({name: 0}, f"{name} must be > 0 seconds", id=f"{name}-zero"))
    return cases


_PRIORITY = r"priority must be an integer from -1000 to 1000, got "
_RETRIES = r"retries must be an integer from 0 to 1000000, got "

#: Options of every wrong type and value, each with the message its error must hold.
BAD_JOB_DEFAULTS = [
    pytest.param({"priority": "high"}, _PRIORITY + "'high'", id="priority-str"),
    pytest.param({"priority": True}, _PRIORITY + "True", id="priority-bool"),
    pytest.param({"priority": NAN}, _PRIORITY + "nan", id="priority-nan"),
    pytest.param({"priority": 1.5}, _PRIORITY + "1.5", id="priority-float"),
    pytest.param({"priority": 1001}, _PRIORITY + "1001", id="priority-too-high"),
    pytest.param({"priority": -1001}, _PRIORITY + "-1001", id="priority-too-low"),
    pytest.param({"priority": 2**64}, _PRIORITY + str(2**64), id="priority-huge"),
    pytest.param({"retries": 1.5}, _RETRIES + "1.5", id="retries-float"),
    pytest.param({"retries": "3"}, _RETRIES + "'3'", id="retries-str"),
    pytest.param({"retries": True}, _RETRIES + "True", id="retries-bool"),
    pytest.param({"retries": NAN}, _RETRIES + "nan", id="retries-nan"),
    pytest.param({"retries": -1}, _RETRIES + "-1", id="retries-negative"),
    pytest.param({"retries": 1_000_001}, _RETRIES + "1000001", id="retries-too-many"),
    *_duration_cases("ttl", zero_ok=False),
    *_duration_cases("timeout", zero_ok=False),
    pytest.param({"backoff": -2}, "backoff base must be >= 0 seconds", id="backoff-negative"),
    pytest.param({"backoff": NAN}, "backoff base must be a finite number", id="backoff-nan"),
    pytest.param({"backoff": INF}, "backoff base must be a finite number", id="backoff-inf"),
    pytest.param({"backoff": "1s"}, "backoff base must be a number of seconds", id="backoff-str"),
    pytest.param({"backoff": True}, "backoff base must be a number of seconds", id="backoff-bool"),
]
_ID = "job_id must be a string of 1 to 256 characters"
BAD_ENQUEUE_ONLY = [
    *_duration_cases("delay", zero_ok=True),
    pytest.param({"job_id": ""}, _ID + ", got ''", id="job_id-empty"),
    pytest.param({"job_id": 5}, _ID + ", got 5", id="job_id-int"),
    pytest.param({"job_id": "x" * 257}, _ID + r", got 'xxxx.*' \(257 characters\)", id="job_id-257"),
    pytest.param({"job_id": "a\x00b"}, r"job_id must not contain NUL characters", id="job_id-nul"),
    pytest.param({"job_id": "a\ud800"}, r"job_id must be valid UTF-8", id="job_id-surrogate"),
]
BAD_OPTIONS = BAD_JOB_DEFAULTS + BAD_ENQUEUE_ONLY


@pytest.mark.parametrize(("options", "message"), BAD_OPTIONS)
async def test_a_bad_option_is_refused_naming_it_and_nothing_is_stored(
    queue: Queue, events: EventRecorder, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidJobError, match=message):
        await queue.add(ECHO, args=[1], **options)
    with pytest.raises(InvalidJobError, match=message):
        await queue.add_bulk([{"task_id": ECHO, "args": [0]}, {"task_id": ECHO, "args": [1], **options}])
    with pytest.raises(InvalidJobError, match=message):
        await echo.options(queue=queue.name, **options).enqueue(queue.backend, 1)

    await assert_nothing_stored(queue, events)


@pytest.mark.parametrize(("options", "message"), BAD_JOB_DEFAULTS)
async def test_a_schedule_with_a_bad_option_is_refused_and_nothing_is_stored(
    queue: Queue, events: EventRecorder, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidJobError, match=message):
        await queue.add_repeatable(ECHO, every=60, args=[1], **options)

    await assert_nothing_stored(queue, events)


@pytest.mark.parametrize(
    ("options", "stored"),
    [
        pytest.param({"priority": Level.HIGH}, {"priority": 1}, id="priority-intenum"),
        pytest.param({"priority": -1000}, {"priority": -1000}, id="priority-lowest"),
        pytest.param({"priority": 1000}, {"priority": 1000}, id="priority-highest"),
        pytest.param({"priority": None}, {"priority": 5}, id="priority-none-is-the-default"),
        pytest.param({"retries": Level.HIGH}, {"max_retries": 1}, id="retries-intenum"),
        pytest.param({"retries": None}, {"max_retries": 0}, id="retries-none-is-none"),
        pytest.param({"retries": 1_000_000}, {"max_retries": 1_000_000}, id="retries-most"),
        pytest.param({"ttl": timedelta(minutes=2)}, {"ttl_s": 120.0}, id="ttl-timedelta"),
        pytest.param({"timeout": 1e9}, {"timeout_s": 1e9}, id="timeout-longest"),
        pytest.param({"delay": 0}, {"status": JobState.WAITING, "delay_until": None}, id="delay-zero"),
        pytest.param({"job_id": "i" * 256}, {"id": "i" * 256}, id="job_id-256"),
        pytest.param({"job_id": "ünï/cödé {x}:1 ✓"}, {"id": "ünï/cödé {x}:1 ✓"}, id="job_id-unicode"),
    ],
)
async def test_a_good_option_is_stored_as_documented(
    queue: Queue, options: dict[str, Any], stored: dict[str, Any]
) -> None:
    job_id = await queue.add(ECHO, args=[1], **options)

    job = await queue.get_job(job_id)
    assert {name: getattr(job, name) for name in stored} == stored
    assert type(job.priority) is int
    assert type(job.max_retries) is int
    if job.status is JobState.WAITING:
        assert await queue.worker().process() is True
        assert (await queue.get_job(job_id)).status is JobState.COMPLETED


def _nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


_JSON = "cannot be serialized to JSON"
_ARGS = "args must be a list or a tuple, got "
_KWARGS = "kwargs must be a mapping or None, got "
BAD_ARGUMENTS = [
    pytest.param("abc", {}, InvalidJobError, _ARGS + "'abc'", id="args-str"),
    pytest.param(5, {}, InvalidJobError, _ARGS + "5", id="args-int"),
    pytest.param({"a": 1}, {}, InvalidJobError, _ARGS + r"\{'a': 1\}", id="args-dict"),
    pytest.param(b"ab", {}, InvalidJobError, _ARGS + "b'ab'", id="args-bytes"),
    pytest.param([], [("a", 1)], InvalidJobError, _KWARGS + r"\[\('a', 1\)\]", id="kwargs-pairs"),
    pytest.param([], "x", InvalidJobError, _KWARGS + "'x'", id="kwargs-str"),
    pytest.param([NAN], {}, SerializationError, r"NaN or infinity at args\[0\]", id="nan"),
    pytest.param(
        [[1, {"x": INF}]],
        {},
        SerializationError,
        r"NaN or infinity at args\[0\]\[1\]\['x'\]",
        id="inf-nested",
    ),
    pytest.param([], {"k": -INF}, SerializationError, r"NaN or infinity at kwargs\['k'\]", id="inf-kwarg"),
    pytest.param(["a\x00b"], {}, SerializationError, r"a NUL character at args\[0\]", id="nul-string"),
    pytest.param([{"a\x00": 1}], {}, SerializationError, r"a NUL character at args\[0\]", id="nul-key"),
    pytest.param([object()], {}, SerializationError, _JSON, id="object"),
    pytest.param([{1, 2}], {}, SerializationError, _JSON, id="set"),
    pytest.param([2**64], {}, SerializationError, _JSON, id="int-past-64-bits"),
    pytest.param([_nested(300)], {}, SerializationError, _JSON, id="nested-300-deep"),
    pytest.param(["\ud800"], {}, SerializationError, _JSON, id="lone-surrogate"),
    pytest.param([], {1: "x"}, SerializationError, _JSON, id="non-string-key"),
    pytest.param(["x" * 2_000_000], {}, PayloadTooLargeError, "the limit is 1048576 bytes", id="too-large"),
]


@pytest.mark.parametrize(("args", "kwargs", "error", "message"), BAD_ARGUMENTS)
async def test_bad_arguments_are_refused_naming_the_problem_and_nothing_is_stored(
    queue: Queue,
    events: EventRecorder,
    args: list[Any],
    kwargs: dict[Any, Any],
    error: type[Exception],
    message: str,
) -> None:
    with pytest.raises(error, match=message):
        await queue.add(ECHO, args=args, kwargs=kwargs)
    with pytest.raises(error, match=message):
        await queue.add_bulk([{"task_id": ECHO}, {"task_id": ECHO, "args": args, "kwargs": kwargs}])
    with pytest.raises(error, match=message):
        await queue.add_repeatable(ECHO, every=60, args=args, kwargs=kwargs)

    await assert_nothing_stored(queue, events)


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        pytest.param(["a\\u0000b", "null", None, "NaN"], {}, id="look-alikes"),
        pytest.param([2**63 - 1, -(2**63), 1e308, -0.0, 0.1], {}, id="number-edges"),
        pytest.param(["ünï ✓ \U0001f600", "\t\n\x01"], {"": "empty key", "ü": [{}]}, id="text"),
        pytest.param([_nested(100)], {}, id="nested-100-deep"),
    ],
)
async def test_arguments_at_the_edges_of_json_run_and_come_back_unchanged(
    queue: Queue, args: list[Any], kwargs: dict[str, Any]
) -> None:
    job_id = await queue.add(ECHO, args=args, kwargs=kwargs)

    assert await queue.worker().process() is True
    job = await queue.get_job(job_id)
    assert (job.status, job.args, job.kwargs, job.result) == (
        JobState.COMPLETED,
        args,
        kwargs,
        [args, kwargs],
    )


_TASK = "task id must be a string of 1 to 256 characters"


@pytest.mark.parametrize(
    ("task_id", "message"),
    [
        pytest.param("", _TASK + ", got ''", id="empty"),
        pytest.param(None, _TASK + ", got None", id="none"),
        pytest.param(5, _TASK + ", got 5", id="int"),
        pytest.param("t" * 257, _TASK + r", got 'tttt.*' \(257 characters\)", id="257"),
        pytest.param("a\x00b", "task id must not contain NUL characters", id="nul"),
    ],
)
async def test_a_bad_task_id_is_refused_and_nothing_is_stored(
    queue: Queue, events: EventRecorder, task_id: Any, message: str
) -> None:
    with pytest.raises(InvalidJobError, match=message):
        await queue.add(task_id)
    with pytest.raises(InvalidJobError, match=message):
        await queue.add_bulk([{"task_id": ECHO}, {"task_id": task_id}])
    with pytest.raises(InvalidJobError, match=message):
        await queue.add_repeatable(task_id, every=60)

    await assert_nothing_stored(queue, events)


async def test_a_task_id_of_256_characters_is_stored(queue: Queue) -> None:
    job_id = await queue.add("t" * 256)

    assert (await queue.get_job(job_id)).task == "t" * 256


@pytest.mark.parametrize(
    ("call", "what"),
    [
        pytest.param({"task_id": HUGE}, "task id", id="task-id"),
        pytest.param({"task_id": ECHO, "job_id": HUGE}, "job_id", id="job-id"),
        pytest.param({"task_id": ECHO, "priority": HUGE}, "priority", id="priority"),
        pytest.param({"task_id": ECHO, "delay": HUGE}, "delay", id="delay"),
    ],
)
async def test_a_ten_megabyte_value_is_refused_with_a_short_message(
    queue: Queue, events: EventRecorder, call: dict[str, Any], what: str
) -> None:
    options = dict(call)
    task_id = options.pop("task_id")
    with pytest.raises(InvalidJobError, match=what) as raised:
        await queue.add(task_id, **options)

    assert len(str(raised.value)) < 300
    assert "(10000000 characters)" in str(raised.value)
    await assert_nothing_stored(queue, events)


async def test_a_ten_megabyte_cron_expression_is_refused_with_a_short_message(
    queue: Queue, events: EventRecorder
) -> None:
    with pytest.raises(InvalidScheduleError, match="cron expression must be a string of 1 to 256") as raised:
        await queue.add_repeatable(ECHO, cron=HUGE)

    assert len(str(raised.value)) < 300
    await assert_nothing_stored(queue, events)


_EVERY = "every= of repeatable .* must be"
BAD_SCHEDULES = [
    pytest.param({"every": NAN}, _EVERY + " a finite number of seconds, got nan", id="every-nan"),
    pytest.param({"every": INF}, _EVERY + " a finite number of seconds, got inf", id="every-inf"),
    pytest.param({"every": -INF}, _EVERY + " a finite number of seconds", id="every--inf"),
    pytest.param({"every": 1e10}, _EVERY + " at most 1000000000 seconds", id="every-too-long"),
    pytest.param({"every": 0}, _EVERY + " > 0 seconds, got 0", id="every-zero"),
    pytest.param({"every": -5}, _EVERY + " > 0 seconds, got -5", id="every-negative"),
    pytest.param({"every": timedelta(seconds=-1)}, _EVERY + " > 0 seconds", id="every-negative-td"),
    pytest.param({"every": "5"}, _EVERY + " a number of seconds or a timedelta, got '5'", id="every-str"),
    pytest.param({"every": True}, _EVERY + " a number of seconds or a timedelta, got True", id="every-bool"),
    pytest.param({"cron": "61 * * * *"}, r"invalid cron expression '61 \* \* \* \*'", id="cron-61"),
    pytest.param({"cron": "every minute"}, "invalid cron expression 'every minute'", id="cron-words"),
    pytest.param({"cron": ""}, "cron expression must be a string of 1 to 256 characters", id="cron-empty"),
    pytest.param(
        {"cron": 5}, "cron expression must be a string of 1 to 256 characters, got 5", id="cron-int"
    ),
    pytest.param({"cron": "* " * 130}, r"\(260 characters\)", id="cron-257"),
    pytest.param({}, "needs exactly one of cron= or every=", id="neither"),
    pytest.param({"cron": "* * * * *", "every": 5}, "needs exactly one of cron= or every=", id="both"),
]


@pytest.mark.parametrize(("schedule", "message"), BAD_SCHEDULES)
async def test_a_bad_schedule_is_refused_naming_it_and_nothing_is_stored(
    queue: Queue, events: EventRecorder, schedule: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidScheduleError, match=message):
        await queue.add_repeatable(ECHO, args=[1], **schedule)

    await assert_nothing_stored(queue, events)


async def test_a_bad_schedule_beside_a_good_one_leaves_the_good_one_firing(queue: Queue) -> None:
    key = await queue.add_repeatable(ECHO, every=1, args=["fine"])
    with pytest.raises(InvalidScheduleError):
        await queue.add_repeatable(ECHO, every=INF, args=["bad"])

    [rep] = await queue.repeatables()
    assert rep.key == key
    await queue.worker().scheduler.tick(rep.next_run_at)
    assert await queue.counts() == counts(waiting=1, delayed=1)


#: Ways a stored schedule can be unreadable, each made by storing a record the API refuses.
UNREADABLE = [
    pytest.param({"every_s": None}, "needs exactly one of cron= or every=", id="no-interval"),
    pytest.param({"every_s": "soon"}, "a number of seconds or a timedelta", id="interval-str"),
    pytest.param({"args": "not a list"}, "args must be a list", id="args-not-a-list"),
    pytest.param({"options": {"colour": "red"}}, "unknown options ['colour']", id="unknown-option"),
    pytest.param({"options": {"priority": "high"}}, "priority must be an integer", id="bad-priority"),
    pytest.param({"task": ""}, "task id must be a string", id="no-task"),
]


async def store_unreadable(backend: BaseBackend, queue: str, damage: dict[str, Any]) -> str:
    """Store a schedule whose record `damage` spoils, through the backend's own write."""
    rep = Repeatable(queue, ECHO, every_s=30, args=["bad"], next_run_at=time.time() + 30)
    for name, value in damage.items():
        setattr(rep, name, value)
    assert await backend.add_repeatable(rep)
    return rep.key


@pytest.mark.parametrize(("damage", "reason"), UNREADABLE)
async def test_an_unreadable_schedule_is_skipped_logged_once_and_removable(
    queue: Queue, caplog: pytest.LogCaptureFixture, damage: dict[str, Any], reason: str
) -> None:
    good = await queue.add_repeatable(ECHO, every=30, args=["fine"])
    bad = await store_unreadable(queue.backend, queue.name, damage)
    worker = queue.worker()

    with caplog.at_level(logging.ERROR, logger="asyncmq"):
        [rep] = await queue.repeatables()
        readable, unreadable = await queue.backend.read_repeatables(queue.name)
        await worker.scheduler.tick(rep.next_run_at)
        await worker.scheduler.tick(rep.next_run_at + 30)

    assert rep.key == good
    assert [r.key for r in readable] == [good]
    assert list(unreadable) == [bad]
    assert reason in unreadable[bad]
    assert await queue.counts() == counts(waiting=2, delayed=1)  # the good one fired twice
    assert [m for m in caplog.messages if bad in m and reason in m] != []
    assert len([m for m in caplog.messages if bad in m]) == 1

    assert await queue.remove_repeatable(bad) is True
    assert (await queue.backend.read_repeatables(queue.name))[1] == {}
    assert [r.key for r in await queue.repeatables()] == [good]
    assert await queue.remove_repeatable(bad) is False


async def test_a_duplicate_job_id_in_one_bulk_is_stored_returned_and_announced_once(
    queue: Queue, events: EventRecorder
) -> None:
    ids = await queue.add_bulk(
        [
            {"task_id": ECHO, "args": [1], "job_id": "dup"},
            {"task_id": ECHO, "args": [2]},
            {"task_id": ECHO, "args": [3], "job_id": "dup"},
        ]
    )

    assert len(ids) == 2
    assert ids[0] == "dup"
    assert await queue.counts() == counts(waiting=2)
    assert (await queue.get_job("dup")).args == [1]
    assert [p["id"] for p in events.of("job:enqueued")] == ids


@asyncmq.task
async def fails_with_nul() -> None:
    raise ValueError("bad\x00byte")


@asyncmq.task
async def reports(kind: str) -> str:
    """Reports a progress value that cannot be stored; returns the error it got."""
    value = {"nan": [NAN], "nul": {"step": "a\x00b"}, "set": {1}}[kind]
    try:
        await asyncmq.report_progress(value)
    except SerializationError as exc:
        return str(exc)
    return "stored"


async def test_an_error_message_holding_a_nul_character_is_stored_with_it_escaped(queue: Queue) -> None:
    failing = await queue.add(fails_with_nul.name)
    fine = await queue.add(ECHO, args=["fine"])
    worker = queue.worker()

    assert [await worker.process(), await worker.process()] == [True, True]

    job = await queue.get_job(failing)
    assert job.status is JobState.FAILED
    assert job.error is not None
    assert job.error["message"] == "bad\\x00byte"
    assert "\x00" not in job.error["traceback"]
    assert (await queue.get_job(fine)).status is JobState.COMPLETED


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("nan", r"progress cannot be stored: it holds NaN or infinity at progress\[0\]"),
        ("nul", r"progress cannot be stored: it holds a NUL character at progress\['step'\]"),
        ("set", "progress cannot be serialized to JSON"),
    ],
)
async def test_progress_that_cannot_be_stored_is_refused_to_the_task_naming_the_problem(
    queue: Queue, kind: str, message: str
) -> None:
    job_id = await queue.add(reports.name, args=[kind])

    assert await queue.worker().process() is True

    job = await queue.get_job(job_id)
    assert job.status is JobState.COMPLETED
    assert job.progress is None
    assert re.search(message, job.result)


async def test_a_running_worker_keeps_firing_a_schedule_beside_an_unreadable_one(
    make_queue: Callable[..., Queue], events: EventRecorder, start_worker: StartWorker
) -> None:
    queue = make_queue()
    await store_unreadable(queue.backend, queue.name, {"every_s": None})
    await start_worker(queue.worker(handle_signals=False))

    await queue.add_repeatable(ECHO, every=0.1, args=["fine"])

    await events.wait("job:completed", count=3)
    assert events.of("job:failed") == []
