"""Failing attempts: retries and backoff, the dead-letter queue, TTL and per-attempt timeouts."""

from __future__ import annotations

import asyncio
import time

import pytest

import asyncmq
from asyncmq import Backoff, JobState, Queue
from asyncmq.errors import InvalidJobError, NonRetryableError
from tests.conformance.support import WAIT_S, EventRecorder, counts, gate

#: Keys (test queue names) for which `fail_while_flagged` raises.
FLAGGED: set[str] = set()
#: Keys for which `fail_once` has already failed.
FAILED_ONCE: set[str] = set()
#: Keys whose `noop_for` ran.
RAN: list[str] = []


@asyncmq.task
async def always_fail(message: str) -> None:
    raise ValueError(message)


@asyncmq.task
async def fail_while_flagged(key: str) -> str:
    if key in FLAGGED:
        raise RuntimeError(f"{key} is flagged")
    return "done"


@asyncmq.task
async def fail_once(key: str) -> str:
    if key not in FAILED_ONCE:
        FAILED_ONCE.add(key)
        raise ConnectionError("first try fails")
    return "second try"


@asyncmq.task
async def give_up() -> None:
    raise NonRetryableError("card declined")


@asyncmq.task
async def hold(key: str) -> str:
    return await gate(key).hold()


@asyncmq.task
async def noop_for(key: str) -> None:
    RAN.append(key)


ALWAYS_FAIL = always_fail.name


async def _fail_through_backoff(queue: Queue, job_id: str, attempts: int) -> list[float]:
    """Run `attempts` failing attempts of a job that backs off, promoting it each time it is
    due; return the backoff delay measured after each."""
    worker = queue.worker()
    delays = []
    for attempt in range(1, attempts + 1):
        assert await worker.process() is True
        job = await queue.get_job(job_id)
        assert (job.status, job.attempt) == (JobState.DELAYED, attempt)
        assert job.delay_until is not None
        assert job.finished_at is not None
        delays.append(job.delay_until - job.finished_at)
        assert await worker.process() is False  # not before its backoff ran out
        await worker.scheduler.tick(job.delay_until)
    return delays


async def test_a_failing_job_is_retried_after_a_fixed_backoff_then_fails(
    queue: Queue, events: EventRecorder
) -> None:
    job_id = await queue.add(ALWAYS_FAIL, args=["boom"], retries=2, backoff=Backoff.fixed(30))

    delays = await _fail_through_backoff(queue, job_id, attempts=2)
    assert await queue.worker().process() is True

    assert delays == [pytest.approx(30, abs=0.05)] * 2
    job = await queue.get_job(job_id)
    assert (job.status, job.attempt, job.max_retries) == (JobState.FAILED, 3, 2)
    assert job.error is not None
    assert (job.error["type"], job.error["message"]) == ("ValueError", "boom")
    assert events.names(job_id) == [
        "job:enqueued",
        "job:started",
        "job:retried",
        "job:delayed",
        "job:started",
        "job:retried",
        "job:delayed",
        "job:started",
        "job:failed",
    ]
    assert [(p["attempt"], p["status"]) for p in events.of("job:retried", job_id)] == [
        (1, "delayed"),
        (2, "delayed"),
    ]
    assert [(p["attempt"], p["status"]) for p in events.of("job:failed", job_id)] == [(3, "failed")]


async def test_an_exponential_backoff_doubles_up_to_its_cap(queue: Queue, events: EventRecorder) -> None:
    backoff = Backoff.exponential(base=10, max_delay=25, jitter=0)
    job_id = await queue.add(ALWAYS_FAIL, args=["boom"], retries=3, backoff=backoff)

    delays = await _fail_through_backoff(queue, job_id, attempts=3)
    assert await queue.worker().process() is True

    assert delays == [pytest.approx(10, abs=0.05), pytest.approx(20, abs=0.05), pytest.approx(25, abs=0.05)]
    assert [p["attempt"] for p in events.of("job:retried", job_id)] == [1, 2, 3]
    assert [p["attempt"] for p in events.of("job:delayed", job_id)] == [1, 2, 3]
    assert (await queue.get_job(job_id)).status is JobState.FAILED


async def test_a_retry_without_backoff_is_ready_at_once(queue: Queue, events: EventRecorder) -> None:
    job_id = await queue.add(fail_once.name, args=[queue.name], retries=1)
    worker = queue.worker()

    assert await worker.process() is True
    job = await queue.get_job(job_id)
    assert (job.status, job.attempt) == (JobState.WAITING, 1)
    assert await worker.process() is True

    job = await queue.get_job(job_id)
    assert (job.status, job.attempt, job.result) == (JobState.COMPLETED, 2, "second try")
    assert events.names(job_id) == [
        "job:enqueued",
        "job:started",
        "job:retried",
        "job:started",
        "job:completed",
    ]
    assert [p["status"] for p in events.of("job:retried", job_id)] == ["waiting"]


async def test_a_running_worker_waits_out_each_backoff_before_the_next_attempt(
    queue: Queue, events: EventRecorder
) -> None:
    job_id = await queue.add(ALWAYS_FAIL, args=["boom"], retries=2, backoff=Backoff.fixed(0.1))

    await asyncio.wait_for(queue.worker(burst=True, handle_signals=False).run(), WAIT_S)

    retried = events.of("job:retried", job_id)
    started = events.of("job:started", job_id)
    assert [p["attempt"] for p in started] == [1, 2, 3]
    for before, after in zip(retried, started[1:], strict=True):
        assert after["timestamps"]["started_at"] >= before["timestamps"]["delay_until"]
        assert before["timestamps"]["delay_until"] - before["timestamps"]["finished_at"] >= 0.09
    assert (await queue.get_job(job_id)).status is JobState.FAILED


async def test_a_job_that_exhausts_its_retries_is_listed_as_failed_and_can_be_sent_back(
    queue: Queue, events: EventRecorder
) -> None:
    FLAGGED.add(queue.name)
    job_id = await queue.add(fail_while_flagged.name, args=[queue.name], retries=1)
    worker = queue.worker()
    assert [await worker.process(), await worker.process(), await worker.process()] == [True, True, False]

    [failed] = await queue.list_jobs("failed")
    assert (failed.id, failed.status, failed.attempt) == (job_id, JobState.FAILED, 2)
    assert failed.error is not None
    assert (failed.error["type"], failed.error["message"]) == ("RuntimeError", f"{queue.name} is flagged")
    assert await queue.counts() == counts(failed=1)

    FLAGGED.discard(queue.name)
    assert await queue.retry_job(job_id) is True

    job = await queue.get_job(job_id)
    assert (job.status, job.attempt, job.error, job.finished_at) == (JobState.WAITING, 0, None, None)
    assert await queue.list_jobs("failed") == []
    assert [p["id"] for p in events.of("job:enqueued")] == [job_id, job_id]
    assert await worker.process() is True
    job = await queue.get_job(job_id)
    assert (job.status, job.attempt, job.result) == (JobState.COMPLETED, 1, "done")
    assert await queue.retry_job(job_id) is False  # a completed job is not sent back


async def test_a_non_retryable_error_fails_the_job_at_once(queue: Queue, events: EventRecorder) -> None:
    job_id = await queue.add(give_up.name, retries=5)
    worker = queue.worker()

    assert await worker.process() is True
    assert await worker.process() is False

    job = await queue.get_job(job_id)
    assert (job.status, job.attempt) == (JobState.FAILED, 1)
    assert events.names(job_id) == ["job:enqueued", "job:started", "job:failed"]
    [failed] = events.of("job:failed", job_id)
    assert failed["error"] == {"type": "NonRetryableError", "message": "card declined"}


async def test_a_job_expires_if_its_ttl_passes_before_it_starts(queue: Queue, events: EventRecorder) -> None:
    stale = queue.build_job(noop_for.name, args=[f"{queue.name}-stale"], ttl=1, now=time.time() - 2)
    assert await queue.backend.enqueue([stale]) == [True]
    fresh_id = await queue.add(noop_for.name, args=[f"{queue.name}-fresh"], ttl=60)
    worker = queue.worker()

    assert [await worker.process(), await worker.process()] == [True, True]

    job = await queue.get_job(stale.id)
    assert (job.status, job.started_at) == (JobState.EXPIRED, None)
    assert job.finished_at is not None
    assert events.names(stale.id) == ["job:expired"]
    assert events.of("job:expired")[0]["status"] == "expired"
    assert (await queue.get_job(fresh_id)).status is JobState.COMPLETED
    assert [key for key in RAN if key.startswith(queue.name)] == [f"{queue.name}-fresh"]
    assert await queue.counts() == counts(expired=1, completed=1)


async def test_an_attempt_running_past_its_timeout_fails_with_job_timeout_error(
    queue: Queue, events: EventRecorder
) -> None:
    job_id = await queue.add(hold.name, args=[queue.name], timeout=0.05)

    assert await asyncio.wait_for(queue.worker().process(), WAIT_S) is True

    job = await queue.get_job(job_id)
    assert (job.status, job.attempt) == (JobState.FAILED, 1)
    [failed] = events.of("job:failed", job_id)
    assert failed["error"] == {
        "type": "JobTimeoutError",
        "message": "attempt 1 exceeded the timeout of 0.05s",
    }
    assert gate(queue.name).interrupted.is_set()  # the attempt itself was stopped


async def test_a_timed_out_attempt_is_retried_like_any_failure(queue: Queue, events: EventRecorder) -> None:
    job_id = await queue.add(hold.name, args=[queue.name], timeout=0.05, retries=1)
    worker = queue.worker()

    assert await asyncio.wait_for(worker.process(), WAIT_S) is True
    assert (await queue.get_job(job_id)).status is JobState.WAITING
    assert [p["error"]["type"] for p in events.of("job:retried", job_id)] == ["JobTimeoutError"]


def ten_per_attempt(attempt: int) -> float:
    """A backoff function as a user writes one: 11 s after the first failure, 21 s after the second."""
    return 10.0 * attempt + 1


def broken_backoff(attempt: int) -> float:
    raise RuntimeError("no delay today")


async def test_a_number_as_backoff_is_an_exponential_base(queue: Queue) -> None:
    job_id = await queue.add(ALWAYS_FAIL, args=["boom"], retries=3, backoff=2)

    delays = await _fail_through_backoff(queue, job_id, attempts=3)

    assert delays == [pytest.approx(2, abs=0.05), pytest.approx(4, abs=0.05), pytest.approx(8, abs=0.05)]


async def test_a_function_as_backoff_gives_the_delay_of_each_retry(
    queue: Queue, events: EventRecorder
) -> None:
    job_id = await queue.add(ALWAYS_FAIL, args=["boom"], retries=2, backoff=ten_per_attempt)

    delays = await _fail_through_backoff(queue, job_id, attempts=2)
    assert await queue.worker().process() is True

    assert delays == [pytest.approx(11, abs=0.05), pytest.approx(21, abs=0.05)]
    assert (await queue.get_job(job_id)).status is JobState.FAILED
    assert [p["attempt"] for p in events.of("job:retried", job_id)] == [1, 2]


async def test_a_backoff_function_that_raises_leaves_the_job_retried_after_the_default_delay(
    queue: Queue,
) -> None:
    job_id = await queue.add(ALWAYS_FAIL, args=["boom"], retries=1, backoff=broken_backoff)
    worker = queue.worker()

    assert await worker.process() is True

    job = await queue.get_job(job_id)
    assert (job.status, job.attempt) == (JobState.DELAYED, 1)
    assert job.delay_until is not None
    assert job.finished_at is not None
    assert 0 < job.delay_until - job.finished_at <= 1.05  # the default: exponential from 1 s
    await worker.scheduler.tick(job.delay_until)
    assert await worker.process() is True
    assert (await queue.get_job(job_id)).status is JobState.FAILED


async def test_a_lambda_as_backoff_is_refused_and_nothing_is_stored(queue: Queue) -> None:
    with pytest.raises(InvalidJobError, match="define it at module level"):
        await queue.add(ALWAYS_FAIL, args=["boom"], retries=2, backoff=lambda attempt: 1.0)

    assert await queue.counts() == counts()


async def test_a_schedules_backoff_function_is_kept_by_path_for_each_occurrence(queue: Queue) -> None:
    await queue.add_repeatable(ALWAYS_FAIL, every=30, args=["boom"], retries=1, backoff=ten_per_attempt)
    [rep] = await queue.repeatables()
    worker = queue.worker()
    await worker.scheduler.tick(rep.next_run_at)

    assert await worker.process() is True

    occurrence = await queue.get_job(rep.occurrence_id(rep.next_run_at))
    assert occurrence.backoff is not None
    assert occurrence.backoff["path"] == f"{__name__}:ten_per_attempt"
    assert occurrence.delay_until is not None
    assert occurrence.finished_at is not None
    assert occurrence.delay_until - occurrence.finished_at == pytest.approx(11, abs=0.05)
