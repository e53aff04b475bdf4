"""Bad input that needs no backend of its own: task declarations, settings, backoffs, queue
names, stored records, and tasks that misbehave. What is stored, and refused, on every
backend is the matrix in tests/conformance/test_bad_input.py."""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

import asyncmq
from asyncmq import limits
from asyncmq.backends.memory import InMemoryBackend
from asyncmq.conf import configure
from asyncmq.conf.global_settings import Settings
from asyncmq.errors import (
    ConfigurationError,
    InvalidJobError,
    InvalidQueueNameError,
    InvalidScheduleError,
    MalformedJobError,
    PayloadTooLargeError,
)
from asyncmq.job import Job, decode_flat, encode_flat
from asyncmq.queues import Queue
from asyncmq.tasks import task
from tests.conformance.support import EventRecorder
from tests.conformance.test_bad_input import BAD_JOB_DEFAULTS

NAN, INF = float("nan"), float("inf")
#: Set by `cleanup_fails` when its attempt has begun.
STARTED = asyncio.Event()


@task(queue="bad")
async def echo(value: object) -> object:
    return value


@task(queue="bad", timeout=0.05)
async def cleanup_fails_after_timeout() -> None:
    try:
        await asyncio.sleep(10)
    finally:
        raise RuntimeError("cleanup failed")


@task(queue="bad")
async def cleanup_fails() -> None:
    STARTED.set()
    try:
        await asyncio.sleep(10)
    finally:
        raise RuntimeError("cleanup failed")


#: What `returns` returns, by name: each JSON-encodes, none can be stored as it is.
RESULTS: dict[str, object] = {"nan": [1.0, NAN], "inf": {"a": INF}, "nul": "a\x00b", "set": {1, 2}}


@task(queue="bad")
async def returns(kind: str) -> object:
    return RESULTS[kind]


@task(queue="bad", timeout=0.05)
async def too_slow() -> None:
    await asyncio.sleep(10)


@pytest.fixture
def queue() -> Queue:
    return Queue("bad", backend=InMemoryBackend())


def test_the_readme_states_the_limits_that_are_enforced() -> None:
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    section = readme.split("**Bad input loses nothing.**", 1)[1].split("\n## ", 1)[0]
    for stated in (
        f"an integer from {limits.PRIORITY_MIN} to {limits.PRIORITY_MAX}",
        f"an integer from 0 to {limits.MAX_RETRIES:,}",
        f"at most {limits.MAX_SECONDS:,} (about 31 years)",
        f"a string of 1 to {limits.MAX_ID_LENGTH} characters",
    ):
        assert stated in section


@pytest.mark.parametrize(("options", "message"), BAD_JOB_DEFAULTS)
def test_a_task_declared_with_a_bad_default_is_refused_naming_the_task(
    options: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidJobError, match="task 'tests.bad_input.never_registered': " + message):
        task(name="tests.bad_input.never_registered", **options)(echo.fn)
    assert "tests.bad_input.never_registered" not in asyncmq.tasks.TASK_REGISTRY


@pytest.mark.parametrize("value", ["high", True, 1.5, NAN, 5000, None])
def test_a_bad_default_priority_in_the_settings_is_refused(value: object) -> None:
    with pytest.raises(ConfigurationError, match="default_priority must be an integer from -1000 to 1000"):
        configure(Settings(default_priority=value))


def test_a_default_priority_from_the_environment_is_checked_when_the_settings_load(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from asyncmq.conf import active_settings

    monkeypatch.setenv("ASYNCMQ_DEFAULT_PRIORITY", "5000")
    configure(None)
    with pytest.raises(ConfigurationError, match="default_priority must be an integer from -1000 to 1000"):
        active_settings()


@pytest.mark.parametrize(
    "spec",
    [
        {"delay_s": NAN},
        {"delay_s": INF},
        {"delay_s": -1.0},
        {"max_s": 1e10},
        {"jitter": 2.0},
        {"jitter": NAN},
        {"delay_s": "1"},
    ],
)
def test_a_backoff_that_is_not_a_finite_duration_is_refused(spec: dict[str, Any]) -> None:
    with pytest.raises(InvalidScheduleError, match="delays finite and >= 0"):
        asyncmq.Backoff(**{"kind": "fixed", "delay_s": 1.0, "max_s": 1.0, **spec})


async def test_a_payload_over_the_configured_limit_is_refused(queue: Queue) -> None:
    configure(Settings(max_payload_bytes=1000))
    with pytest.raises(PayloadTooLargeError, match=r"are 1\d\d\d bytes encoded; the limit is 1000 bytes"):
        await queue.add(echo.name, args=["x" * 1000])
    await queue.add(echo.name, args=["x" * 900])
    assert (await queue.counts())["waiting"] == 1


async def test_an_add_bulk_entry_without_a_task_id_stores_nothing(queue: Queue) -> None:
    with pytest.raises(InvalidJobError, match="add_bulk entry 1 has no 'task_id'"):
        await queue.add_bulk([{"task_id": echo.name, "args": [1]}, {"args": [1]}])
    assert set((await queue.counts()).values()) == {0}


@pytest.mark.parametrize("name", ["", " ", "a b", "{emails}", "-leading", "x" * 129, None, 5])
def test_an_empty_or_invalid_queue_name_is_refused(name: object) -> None:
    with pytest.raises(InvalidQueueNameError, match="invalid queue name"):
        Queue(name, backend=InMemoryBackend())  # type: ignore[arg-type]


def test_a_ten_megabyte_queue_name_is_refused_with_a_short_message() -> None:
    with pytest.raises(InvalidQueueNameError, match=r"\(10000000 characters\)") as raised:
        Queue("q" * 10_000_000, backend=InMemoryBackend())
    assert len(str(raised.value)) < 300


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"concurrency": 0}, "concurrency must be an integer from 1 to 100000, got 0"),
        ({"concurrency": "5"}, "concurrency must be an integer from 1 to 100000, got '5'"),
        ({"concurrency": 1.5}, "concurrency must be an integer from 1 to 100000, got 1.5"),
        ({"concurrency": True}, "concurrency must be an integer from 1 to 100000, got True"),
        ({"rate_limit": 0}, "rate_limit must be an integer from 1 to 1000000000, got 0"),
        ({"rate_limit": NAN}, "rate_limit must be an integer from 1 to 1000000000, got nan"),
        ({"max_stalls": -1}, "max_stalls must be an integer from 0 to 1000000, got -1"),
        ({"max_stalls": "1"}, "max_stalls must be an integer from 0 to 1000000, got '1'"),
        ({"keep_finished": -1}, "keep_finished must be an integer from 0 to 1000000000, got -1"),
        ({"keep_finished": 1.5}, "keep_finished must be an integer from 0 to 1000000000, got 1.5"),
        ({"rate_interval": INF}, "rate_interval must be a finite number of seconds"),
        ({"lease": NAN}, "lease must be a finite number of seconds"),
        ({"scan_interval": "1"}, "scan_interval must be a number of seconds or a timedelta"),
        ({"result_ttl": -1}, "result_ttl must be >= 0 seconds"),
    ],
)
def test_a_queue_with_a_bad_option_is_refused_naming_it(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match="queue 'bad': " + message):
        Queue("bad", backend=InMemoryBackend(), **options)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"concurrency": 0}, "concurrency must be an integer from 1 to 100000, got 0"),
        ({"concurrency": -3}, "concurrency must be an integer from 1 to 100000, got -3"),
        ({"concurrency": "5"}, "concurrency must be an integer from 1 to 100000, got '5'"),
        ({"claim_batch": 0}, "claim_batch must be an integer from 1 to 100000, got 0"),
        ({"claim_batch": 2.5}, "claim_batch must be an integer from 1 to 100000, got 2.5"),
        ({"shutdown_grace": -1}, "shutdown_grace must be >= 0 seconds, got -1"),
        ({"shutdown_grace": NAN}, "shutdown_grace must be a finite number of seconds"),
    ],
)
def test_a_worker_with_a_bad_option_is_refused_naming_it(options: dict[str, Any], message: str) -> None:
    queue = Queue("bad", backend=InMemoryBackend())
    with pytest.raises(ValueError, match=re.escape(f"worker of queue 'bad': {message}")):
        queue.worker(**options)


def test_a_worker_takes_its_options_in_their_units() -> None:
    worker = Queue("good", backend=InMemoryBackend()).worker(
        concurrency=3, claim_batch=7, shutdown_grace=timedelta(seconds=2)
    )
    assert (worker.concurrency, worker.claim_batch, worker.shutdown_grace_s) == (3, 7, 2.0)


@pytest.mark.parametrize("name", ["emails", "emails.high", "tenant:42:emails", "a-b_c", "x" * 128])
def test_queue_names_with_dots_colons_and_dashes_are_accepted(name: str) -> None:
    assert Queue(name, backend=InMemoryBackend()).name == name


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (b"[1, 2]", "must be a JSON object, not list"),
        (b'{"id": "a"}', "lacks queue, task"),
        (b'{"id": "a", "queue": "q", "task": "t", "colour": 1}', "unknown fields \\['colour'\\]"),
        (b'{"id": "a", "queue": "q", "task": "t", "status": "lost"}', "malformed status: 'lost'"),
        (b'{"id": "a", "queue": "q", "task": "t", "args": {"x": 1}}', "malformed args: a dict"),
        (b'{"id": "a", "queue": "q", "task": "t", "meta": null}', "malformed meta: null"),
        (b'{"id": "a", "queue": "q", "task": "t", "priority": "1"}', "malformed priority: '1'"),
        (
            b'{"id": "a", "queue": "q", "task": "t", "status": ["waiting"]}',
            "malformed status: \\['waiting'\\]",
        ),
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


@pytest.mark.parametrize(
    ("kind", "problem"),
    [
        ("nan", r"cannot be stored: it holds NaN or infinity at result\[1\]"),
        ("inf", r"cannot be stored: it holds NaN or infinity at result\['a'\]"),
        ("nul", "cannot be stored: it holds a NUL character at result"),
        ("set", "returned a set that cannot be serialized"),
    ],
)
async def test_a_result_that_cannot_be_stored_as_returned_fails_its_job(
    queue: Queue, kind: str, problem: str
) -> None:
    job_id = await queue.add(returns.name, args=[kind])

    assert await queue.worker().process() is True

    failed = await queue.get_job(job_id)
    assert failed.status == "failed"
    assert failed.error is not None
    assert failed.error["type"] == "ResultSerializationError"
    assert re.search(problem, failed.error["message"])


async def test_a_task_raising_in_its_finally_after_a_timeout_fails_and_the_worker_goes_on(
    queue: Queue,
) -> None:
    await cleanup_fails_after_timeout.enqueue(queue.backend)  # with the task's timeout
    await too_slow.enqueue(queue.backend)
    await queue.add(echo.name, args=["fine"])

    await asyncio.wait_for(queue.run(burst=True), 10)

    failed = {job.task: job.error for job in await queue.list_jobs("failed")}
    assert failed[cleanup_fails_after_timeout.name] == {
        "type": "RuntimeError",
        "message": "cleanup failed",
        "traceback": failed[cleanup_fails_after_timeout.name]["traceback"],  # type: ignore[index]
    }
    assert failed[too_slow.name]["type"] == "JobTimeoutError"  # type: ignore[index]
    (done,) = await queue.list_jobs("completed")
    assert done.result == "fine"


async def test_a_task_raising_in_its_finally_when_cancelled_leaves_the_worker_whole() -> None:
    events = EventRecorder("bad")
    events.subscribe()
    queue = Queue("bad", backend=InMemoryBackend(), concurrency=1, lease=0.3)
    STARTED.clear()
    worker = queue.worker(handle_signals=False)
    running = asyncio.create_task(worker.run())
    try:
        cancelled = await queue.add(cleanup_fails.name)
        await asyncio.wait_for(STARTED.wait(), 5)
        assert await queue.cancel(cancelled) is True
        # The same slot then runs a job that times out, and one that completes.
        slow = await too_slow.enqueue(queue.backend)
        fine = await queue.add(echo.name, args=["fine"])
        await events.wait("job:completed", job_id=fine)
        assert (await queue.get_job(cancelled)).status == "cancelled"
        slow_job = await queue.get_job(slow)
        assert slow_job.status == "failed"
        assert slow_job.error is not None
        assert slow_job.error["type"] == "JobTimeoutError"
        assert not running.done()
    finally:
        events.unsubscribe()
        worker.stop()
        await asyncio.wait_for(running, 10)
