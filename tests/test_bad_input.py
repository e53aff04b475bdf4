"""Bad input gets a clear error naming the problem, and nothing is stored."""

from __future__ import annotations

import asyncio
import datetime as dt

import orjson
import pytest

from asyncmq.backends.memory import InMemoryBackend
from asyncmq.conf import configure
from asyncmq.conf.global_settings import Settings
from asyncmq.errors import (
    InvalidJobError,
    InvalidQueueNameError,
    InvalidScheduleError,
    MalformedJobError,
    PayloadTooLargeError,
    SerializationError,
)
from asyncmq.job import Job, decode_flat, encode_flat
from asyncmq.queues import Queue
from asyncmq.tasks import task


@task(queue="bad")
async def echo(value: object) -> object:
    return value


@pytest.fixture
def queue() -> Queue:
    return Queue("bad", backend=InMemoryBackend())


async def assert_nothing_stored(queue: Queue) -> None:
    assert set((await queue.counts()).values()) == {0}
    assert await queue.repeatables() == []


async def test_arguments_that_cannot_be_serialized_are_refused_at_enqueue(queue: Queue) -> None:
    with pytest.raises(SerializationError, match=r"arguments of task 'tests.test_bad_input.echo' cannot be"):
        await queue.add(echo.name, args=[object()])
    with pytest.raises(SerializationError, match="cannot be serialized"):
        await echo.enqueue(queue.backend, {1, 2})
    await assert_nothing_stored(queue)


async def test_one_bad_entry_in_a_bulk_add_stores_nothing(queue: Queue) -> None:
    jobs = [{"task_id": echo.name, "args": [1]}, {"task_id": echo.name, "args": [object()]}]
    with pytest.raises(SerializationError):
        await queue.add_bulk(jobs)
    with pytest.raises(InvalidJobError, match="add_bulk entry 0 got unknown options \\['colour'\\]"):
        await queue.add_bulk([{"task_id": echo.name, "colour": "red"}])
    with pytest.raises(InvalidJobError, match="add_bulk entry 0 has no 'task_id'"):
        await queue.add_bulk([{"args": [1]}])
    await assert_nothing_stored(queue)


async def test_a_payload_over_the_size_limit_is_refused(queue: Queue) -> None:
    configure(Settings(max_payload_bytes=1000))
    with pytest.raises(PayloadTooLargeError, match=r"are 1\d\d\d bytes encoded; the limit is 1000 bytes"):
        await queue.add(echo.name, args=["x" * 1000])
    await queue.add(echo.name, args=["x" * 900])
    assert (await queue.counts())["waiting"] == 1


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        ({"cron": "61 * * * *"}, "invalid cron expression '61 \\* \\* \\* \\*'"),
        ({"cron": "every minute"}, "invalid cron expression 'every minute'"),
        ({"every": 0}, "every= of repeatable .* must be > 0 seconds, got 0"),
        ({"every": -5}, "must be > 0 seconds, got -5"),
        ({"every": dt.timedelta(seconds=-1)}, "must be > 0 seconds"),
        ({}, "needs exactly one of cron= or every="),
        ({"cron": "* * * * *", "every": 5}, "needs exactly one of cron= or every="),
    ],
)
async def test_an_invalid_schedule_is_refused(
    queue: Queue, schedule: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidScheduleError, match=message):
        await queue.add_repeatable(echo.name, args=[1], **schedule)  # type: ignore[arg-type]
    await assert_nothing_stored(queue)


async def test_a_repeatable_with_unserializable_arguments_is_refused(queue: Queue) -> None:
    with pytest.raises(SerializationError):
        await queue.add_repeatable(echo.name, every=5, args=[object()])
    await assert_nothing_stored(queue)


@pytest.mark.parametrize("delay", [-1, -0.001, dt.timedelta(seconds=-3), float("nan")])
async def test_a_negative_delay_is_refused(queue: Queue, delay: float) -> None:
    with pytest.raises(InvalidScheduleError, match="delay must be >= 0 seconds"):
        await queue.add(echo.name, args=[1], delay=delay)
    await assert_nothing_stored(queue)


@pytest.mark.parametrize(
    "options",
    [{"ttl": 0}, {"ttl": -1}, {"timeout": 0}, {"retries": -1}, {"job_id": ""}, {"backoff": -2}],
)
async def test_invalid_job_options_are_refused(queue: Queue, options: dict[str, object]) -> None:
    with pytest.raises(InvalidJobError):
        await queue.add(echo.name, args=[1], **options)  # type: ignore[arg-type]
    await assert_nothing_stored(queue)


@pytest.mark.parametrize("name", ["", " ", "a b", "{emails}", "-leading", "x" * 129, None, 5])
def test_an_empty_or_invalid_queue_name_is_refused(name: object) -> None:
    with pytest.raises(InvalidQueueNameError, match="invalid queue name"):
        Queue(name, backend=InMemoryBackend())  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["emails", "emails.high", "tenant:42:emails", "a-b_c", "x" * 128])
def test_queue_names_with_dots_colons_and_dashes_are_accepted(name: str) -> None:
    assert Queue(name, backend=InMemoryBackend()).name == name


async def test_an_empty_task_id_is_refused(queue: Queue) -> None:
    with pytest.raises(InvalidJobError, match="task id must be a non-empty string"):
        await queue.add("")


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (b"[1, 2]", "must be a JSON object, not list"),
        (b'{"id": "a"}', "lacks queue, task"),
        (b'{"id": "a", "queue": "q", "task": "t", "colour": 1}', "unknown fields \\['colour'\\]"),
        (b'{"id": "a", "queue": "q", "task": "t", "status": "lost"}', "malformed status: 'lost'"),
        (b'{"id": "a", "queue": "q", "task": "t", "args": {"x": 1}}', "malformed args: {'x': 1}"),
        (b'{"id": "a", "queue": "q", "task": "t", "meta": null}', "malformed meta: None"),
        (b'{"id": "a", "queue": "q", "task": "t", "priority": "1"}', "malformed priority: '1'"),
        (b'{"id": "a", "queue": "q", "task": "t", "error": {"type": 1}}', "malformed error"),
    ],
)
def test_a_malformed_stored_record_raises_an_error_saying_what_is_wrong(record: bytes, message: str) -> None:
    with pytest.raises(MalformedJobError, match=message):
        Job.from_record(orjson.loads(record))


def test_a_job_round_trips_through_its_stored_forms() -> None:
    job = Job(id="a", queue="q", task="t", args=[1, "x"], kwargs={"k": [1]}, created_at=1.5, meta={"m": 1})
    assert Job.from_record(job.to_record()) == job
    assert decode_flat(encode_flat(job)) == job


async def test_a_bad_job_does_not_stop_the_next_one(queue: Queue) -> None:
    await queue.add("tests.test_bad_input.nothing_by_this_name")
    await queue.add(echo.name, args=["fine"])
    await asyncio.wait_for(queue.run(burst=True), 10)
    (failed,) = await queue.list_jobs("failed")
    assert failed.error is not None
    assert failed.error["type"] == "UnknownTaskError"
    assert "no task 'tests.test_bad_input.nothing_by_this_name' is registered" in failed.error["message"]
    (done,) = await queue.list_jobs("completed")
    assert done.result == "fine"
