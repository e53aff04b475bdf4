"""A job id whose finished record expired can be used again, and the new job is never
deleted by the purge of the old one's index entry."""

from __future__ import annotations

import asyncio
import time

import pytest

from asyncmq.backends.redis import RedisBackend
from asyncmq.queues import Queue
from asyncmq.transitions import CANCEL, RETRY, Retention, stall_recovery
from tests.redis.app import nap

KEEP = Retention(ttl_s=3600, keep=100)


async def test_reusing_the_id_of_an_expired_finished_job_keeps_the_new_job(
    backend: RedisBackend, queue_name: str
) -> None:
    queue = Queue(queue_name, backend=backend)
    await queue.add(nap.name, args=[1, 0], job_id="report-1")
    await asyncio.wait_for(queue.worker(burst=True, handle_signals=False).run(), 10)
    base = f"{backend.prefix}:{{{queue_name}}}:"
    await backend.client.delete(base + "job:report-1")  # its TTL ran out; the index entry is left

    assert await queue.add(nap.name, args=[2, 0], job_id="report-1") == "report-1"
    assert await backend.purge_finished(queue_name, time.time() + 10**6, Retention(ttl_s=1, keep=0)) == 1
    await asyncio.wait_for(queue.worker(burst=True, handle_signals=False).run(), 10)
    job = await queue.get_job("report-1")
    assert (job.status, job.result) == ("completed", 4)


async def test_an_index_entry_without_its_record_is_dropped_by_claim_and_recovery_with_a_log_line(
    backend: RedisBackend, queue_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    queue = Queue(queue_name, backend=backend)
    base = f"{backend.prefix}:{{{queue_name}}}:"
    await backend.client.zadd(base + "waiting", {"ghost": 1})
    await backend.client.zadd(base + "active", {"phantom": 1})
    real = await queue.add(nap.name, args=[3, 0])
    claimed = await backend.claim(queue_name, "w", 10, 30, time.time(), None)
    assert [job.id for job in claimed.jobs] == [real]
    assert await backend.recover_stalled(queue_name, time.time(), stall_recovery(1, KEEP)) == []
    assert await backend.client.exists(base + "job:ghost", base + "job:phantom") == 0
    logged = " ".join(record.getMessage() for record in caplog.records)
    assert "ghost" in logged
    assert "phantom" in logged


async def test_an_enqueue_sent_again_after_a_lost_reply_reports_its_own_store(
    backend: RedisBackend, queue_name: str
) -> None:
    queue = Queue(queue_name, backend=backend)
    job = queue.build_job(nap.name, [1, 0], job_id="once")
    assert await backend.enqueue([job]) == [True]
    assert await backend.enqueue([job]) == [True]  # the same store again: not a duplicate
    other = queue.build_job(nap.name, [2, 0], job_id="once", now=job.created_at + 1)
    assert await backend.enqueue([other]) == [False]  # another job with that id: refused
    assert (await queue.counts())["waiting"] == 1


async def test_a_cancel_or_retry_sent_again_after_a_lost_reply_reports_its_own_effect(
    backend: RedisBackend, queue_name: str
) -> None:
    queue = Queue(queue_name, backend=backend)
    job_id = await queue.add(nap.name, args=[1, 0])
    now = time.time()
    cancelled = await backend.transition(queue_name, job_id, CANCEL, now, KEEP)
    assert cancelled is not None
    assert (
        await backend.transition(queue_name, job_id, CANCEL, now, KEEP) == cancelled
    )  # the same call, resent
    assert (
        await backend.transition(queue_name, job_id, CANCEL, now + 1, KEEP) is None
    )  # a later cancel: nothing to do
    retried = await backend.transition(queue_name, job_id, RETRY, now + 2, KEEP)
    assert retried is not None
    assert await backend.transition(queue_name, job_id, RETRY, now + 2, KEEP) == retried
    assert await backend.transition(queue_name, job_id, RETRY, now + 3, KEEP) is None  # waiting already
    assert (await queue.counts())["waiting"] == 1


async def test_a_recovery_sent_again_after_a_lost_reply_returns_the_jobs_it_took_back(
    backend: RedisBackend, queue_name: str
) -> None:
    queue = Queue(queue_name, backend=backend)
    job_id = await queue.add(nap.name, args=[1, 0])
    await backend.claim(queue_name, "gone", 10, 0.01, time.time(), None)
    recovery = stall_recovery(1, KEEP)

    async def recover(recovery_id: str) -> list[str | list[str]]:  # [dropped], [failed], id, record, ...
        plan = (recovery.requeue.wire, recovery.fail.wire, 1)
        return await backend._run("recover", queue_name, *plan, later, 1000, 60, 100, recovery_id)  # type: ignore[no-any-return]

    later = repr(time.time() + 1)
    first = await recover("recovery-1")
    resent = await recover("recovery-1")
    assert len(first) == len(resent) == 4
    assert first[:3] == [[], [], job_id]
    assert resent == first  # the resend reports the same recovered job, for its job:stalled event
    assert await recover("recovery-2") == [[], []]
    assert (await queue.get_job(job_id)).status == "waiting"
