"""The queue totals as the Redis backend keeps them (`<base>totals`, field `<total>:<task>`):
a script sent again after a lost reply adds nothing twice, a batch adds once per job, a task
name may hold ':', a record without a task counts under '?', and deleting the queue deletes
its totals."""

from __future__ import annotations

import time

from asyncmq import JobState, Queue
from asyncmq.backends.redis import RedisBackend
from asyncmq.transitions import CANCEL, Retention, stall_recovery
from tests.redis.app import nap

KEEP = Retention(ttl_s=3600, keep=100)


async def _totals(backend: RedisBackend, queue_name: str) -> dict[str, dict[str, int]]:
    return (await backend.stats(queue_name, time.time())).totals


async def test_scripts_sent_again_after_a_lost_reply_add_nothing_twice(
    backend: RedisBackend, queue_name: str
) -> None:
    queue = Queue(queue_name, backend=backend)
    job = queue.build_job(nap.name, [1, 0])
    assert await backend.enqueue([job]) == [True]
    assert await backend.enqueue([job]) == [True]  # the same store again

    claim = (repr(time.time()), 10, repr(time.time() + 30), "w1", 0, 1, "claim-1")
    first = await backend._run("claim", queue_name, *claim)
    assert await backend._run("claim", queue_name, *claim) == first  # the same claim again
    claimed = await queue.get_job(job.id)
    claimed.status, claimed.result, claimed.finished_at = JobState.COMPLETED, 2, time.time()
    assert await backend.finish([claimed], KEEP) == [True]
    assert await backend.finish([claimed], KEEP) == [True]  # the same outcome again

    delayed = await queue.add(nap.name, args=[2, 0], delay=600)
    now = time.time()
    assert await backend.transition(queue_name, delayed, CANCEL, now, KEEP) is not None
    assert await backend.transition(queue_name, delayed, CANCEL, now, KEEP) is not None  # again

    assert await _totals(backend, queue_name) == {
        nap.name: {"enqueued": 2, "claimed": 1, "completed": 1, "cancelled": 1}
    }


async def test_a_batch_counts_each_job_under_its_task_and_a_missing_task_under_a_question_mark(
    backend: RedisBackend, queue_name: str
) -> None:
    queue = Queue(queue_name, backend=backend)
    jobs = [queue.build_job(nap.name if n % 2 else "reports:monthly", [n, 0]) for n in range(10)]
    assert await backend.enqueue(jobs) == [True] * 10
    await backend.client.hdel(f"{backend.prefix}:{{{queue_name}}}:job:{jobs[0].id}", "task")

    claimed = await backend.claim(queue_name, "w1", 100, 0.01, time.time(), None)
    assert (len(claimed.jobs), len(claimed.unreadable)) == (9, 1)
    assert await backend.fail_unreadable(claimed.unreadable, time.time(), KEEP) == [True]
    recovered = await backend.recover_stalled(queue_name, time.time() + 60, stall_recovery(3, KEEP))
    assert len(recovered) == 9

    assert await _totals(backend, queue_name) == {
        nap.name: {"enqueued": 5, "claimed": 5, "stalled": 5},
        "reports:monthly": {"enqueued": 5, "claimed": 4, "stalled": 4},
        "?": {"claimed": 1, "failed": 1},
    }


async def test_a_job_garbled_while_it_ran_and_failed_by_recovery_counts_as_failed_only(
    backend: RedisBackend, queue_name: str
) -> None:
    queue = Queue(queue_name, backend=backend)
    job_id = await queue.add(nap.name, args=[1, 0])
    await backend.claim(queue_name, "w1", 1, 0.01, time.time(), None)
    await backend.client.hset(f"{backend.prefix}:{{{queue_name}}}:job:{job_id}", "priority", "garbage{")
    (failed,) = await backend.recover_stalled(queue_name, time.time() + 60, stall_recovery(3, KEEP))
    assert failed.status is JobState.FAILED
    assert await _totals(backend, queue_name) == {nap.name: {"enqueued": 1, "claimed": 1, "failed": 1}}


async def test_deleting_a_queue_deletes_its_totals_and_leaves_it_unlisted(
    backend: RedisBackend, queue_name: str
) -> None:
    queue = Queue(queue_name, backend=backend)
    await queue.add(nap.name, args=[1, 0])
    assert queue_name in await backend.queues()
    await backend.delete_queue(queue_name)
    assert await backend.client.exists(f"{backend.prefix}:{{{queue_name}}}:totals") == 0
    assert queue_name not in await backend.queues()
    assert await _totals(backend, queue_name) == {}
