"""Records changed by hand in Redis: a garbage field never leaves a job in no index, a
record deleted while its id waits in line is reported, and finished jobs leave the counts
when their retention ends, with no purge."""

from __future__ import annotations

import logging
import time

import orjson
import pytest

from asyncmq.backends.redis import RedisBackend
from asyncmq.errors import MalformedJobError
from asyncmq.queues import Queue
from asyncmq.transitions import CANCEL, Retention, stall_recovery
from tests.redis.app import nap

KEEP = Retention(ttl_s=3600, keep=100)


async def test_stall_recovery_fails_a_job_garbled_while_it_ran_with_the_reason(
    backend: RedisBackend, queue_name: str
) -> None:
    queue = Queue(queue_name, backend=backend)
    job_id = await queue.add(nap.name, args=[1, 0])
    now = time.time()
    assert [job.id for job in (await backend.claim(queue_name, "w1", 1, 30, now, None)).jobs] == [job_id]
    key = f"{backend.prefix}:{{{queue_name}}}:job:{job_id}"
    await backend.client.hset(key, "priority", "garbage{")

    (recovered,) = await backend.recover_stalled(queue_name, now + 60, stall_recovery(3, KEEP))

    assert (recovered.id, recovered.status, recovered.error["type"]) == (
        job_id,
        "failed",
        "MalformedJobError",
    )

    stored = await backend.client.hgetall(key)
    assert stored["status"] == "failed"
    assert stored["priority"] == "garbage{"  # kept for inspection
    error = orjson.loads(stored["error"])
    assert recovered.error["message"] == error["message"]
    assert error["type"] == "MalformedJobError"
    assert "priority" in error["message"]
    assert await queue.counts() == {**dict.fromkeys(await queue.counts(), 0), "failed": 1}


async def test_a_transition_refuses_a_garbled_job_and_leaves_it_where_it_was(
    backend: RedisBackend, queue_name: str
) -> None:
    queue = Queue(queue_name, backend=backend)
    job_id = await queue.add(nap.name, args=[1, 0])
    await backend.client.hset(f"{backend.prefix}:{{{queue_name}}}:job:{job_id}", "token", "garbage{")

    with pytest.raises(MalformedJobError, match=f"job record {job_id} has a malformed token$"):
        await backend.transition(queue_name, job_id, CANCEL, time.time(), KEEP)
    assert (await queue.counts())["waiting"] == 1


async def test_a_record_deleted_while_its_id_waits_is_dropped_with_a_log_line(
    backend: RedisBackend, queue_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    queue = Queue(queue_name, backend=backend)
    job_id = await queue.add(nap.name, args=[1, 0])
    await backend.client.delete(f"{backend.prefix}:{{{queue_name}}}:job:{job_id}")

    with caplog.at_level(logging.ERROR, logger="asyncmq.backends.redis"):
        assert (await backend.claim(queue_name, "w1", 10, 30, time.time(), None)).jobs == []
    assert any(
        job_id in record.getMessage() and "lost its record" in record.getMessage()
        for record in caplog.records
    )


async def test_finished_jobs_leave_the_counts_when_their_retention_ends_without_a_purge(
    backend: RedisBackend, queue_name: str
) -> None:
    queue = Queue(queue_name, backend=backend, result_ttl=5)
    await queue.add(nap.name, args=[1, 0])
    await queue.worker(handle_signals=False).process()
    assert (await backend.stats(queue_name, time.time())).counts["completed"] == 1

    later = await backend.stats(queue_name, time.time() + 10)  # the records' TTL removed them by then
    assert later.counts["completed"] == 0


async def test_a_delayed_job_with_a_garbage_token_is_promoted_and_failed_by_its_claim(
    backend: RedisBackend, queue_name: str
) -> None:
    queue = Queue(queue_name, backend=backend)
    job_id = await queue.add(nap.name, args=[1, 0], delay=60)
    await backend.client.hset(f"{backend.prefix}:{{{queue_name}}}:job:{job_id}", "token", "garbage{")

    assert (await backend.promote_due(queue_name, time.time() + 120, 10))[0] == 1
    claimed = await backend.claim(queue_name, "w1", 10, 30, time.time(), None)

    assert [(job.id, job.token) for job in claimed.unreadable] == [(job_id, "garbage{")]
    assert "malformed token" in claimed.unreadable[0].reason
    assert await backend.fail_unreadable(claimed.unreadable, time.time(), KEEP) == [True]
    assert (await queue.counts())["failed"] == 1
