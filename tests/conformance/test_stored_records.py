"""Stored records damaged by hand or by foreign code: a job whose record no worker can read
fails at once with the reason naming the field, the worker goes on, the record is kept."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from asyncmq.backends.base import BaseBackend, WorkerInfo
from asyncmq.cli.common import BackendLabel
from asyncmq.cli.info import _print, _workers
from asyncmq.cli.queue import _print_info, _queue_info, queue_summaries
from asyncmq.core.event import Event
from asyncmq.errors import MalformedJobError
from asyncmq.job import FIELD_KINDS
from asyncmq.queues import Queue
from asyncmq.transitions import stall_recovery
from tests.conformance.damage import GARBAGE, add_unknown_field, damage, damage_worker, stored_record
from tests.conformance.support import WAIT_S, EventRecorder, noop

#: Fields a claim writes anew, so garbage in them is gone before anything reads it.
_OVERWRITTEN = frozenset({"worker_id", "lease_until", "status"})
#: Fields that failing a job writes.
_WRITTEN_BY_FAILING = frozenset({"status", "error", "finished_at", "token"})
#: Fields that may hold any JSON value, or any text: garbage there can be a value.
_FREE = frozenset({"result", "progress", "repeat_key"})


def _error(record: dict[str, Any]) -> dict[str, Any]:
    error = record.get("error")
    return orjson.loads(error) if isinstance(error, str | bytes) else error or {}


async def test_a_job_with_any_field_garbled_fails_at_once_naming_it_and_the_worker_goes_on(
    backend: BaseBackend, queue: Queue
) -> None:
    healthy = [await queue.add(noop.name) for _ in range(3)]
    garbled: dict[str, str] = {}
    for field in FIELD_KINDS:
        job_id = await queue.add(noop.name)
        if await damage(backend, queue.name, job_id, field):
            garbled[field] = job_id
        else:
            await queue.remove_job(job_id)
    recorder = EventRecorder(queue.name)
    recorder.subscribe()
    try:
        await asyncio.wait_for(queue.worker(burst=True, handle_signals=False).run(), WAIT_S * 4)
    finally:
        recorder.unsubscribe()

    failed_events = {
        payload["id"]: payload for event, payload in recorder.records if event is Event.JOB_FAILED
    }
    outcomes: dict[str, str] = {}
    for field, job_id in garbled.items():
        record = await stored_record(backend, queue.name, job_id)
        assert record is not None, f"the record with a garbled {field} was deleted"
        status = str(record["status"])
        outcomes[field] = status
        if status == "completed":
            assert field in _OVERWRITTEN | _FREE, f"a garbled {field} was run as if readable"
            continue
        assert status == "failed", f"a garbled {field} left the job {status}"
        error = _error(record)
        if field == "task" and error["type"] != MalformedJobError.__name__:  # text: an unknown task
            assert GARBAGE in error["message"]
            continue
        assert error["type"] == MalformedJobError.__name__, (field, error)
        assert field in error["message"], (field, error)
        assert failed_events[job_id]["error"]["message"] == error["message"]
        if field not in _WRITTEN_BY_FAILING:  # kept for inspection, and read as unreadable
            assert GARBAGE in str(record.get(field)) or record.get(field) == 12345, (field, record)
            with pytest.raises(MalformedJobError, match=f"malformed {field}"):
                await queue.get_job(job_id)
    for job_id in healthy:
        assert (await queue.get_job(job_id)).status == "completed"
    counts = await queue.counts()
    assert counts["failed"] == sum(status == "failed" for status in outcomes.values())
    assert counts["completed"] == len(healthy) + sum(status == "completed" for status in outcomes.values())
    assert counts["waiting"] == counts["active"] == counts["delayed"] == 0


async def test_a_job_with_an_unknown_field_fails_at_once_naming_it(
    backend: BaseBackend, queue: Queue
) -> None:
    job_id = await queue.add(noop.name)
    if not await add_unknown_field(backend, queue.name, job_id):
        pytest.skip(f"the {backend.name} backend stores no field a job does not have")
    fine = await queue.add(noop.name)

    await asyncio.wait_for(queue.worker(burst=True, handle_signals=False).run(), WAIT_S)

    record = await stored_record(backend, queue.name, job_id)
    assert record is not None
    assert (record["status"], record["colour"]) == ("failed", "blue")
    assert "unknown fields ['colour']" in _error(record)["message"]
    assert (await queue.get_job(fine)).status == "completed"


async def test_a_garbled_worker_record_shows_as_unreadable_and_breaks_no_listing(
    backend: BaseBackend, queue: Queue, capsys: pytest.CaptureFixture[str]
) -> None:
    now = time.time()
    for worker_id in ("broken", "fine"):
        info = WorkerInfo(worker_id, queue.name, "host", 1, 2, now, now, now + 600)
        await backend.heartbeat(info, [], now + 600)
    await damage_worker(backend, queue.name, "broken")

    stats = await queue.stats()
    assert [w.id for w in stats.workers] == ["fine"]
    assert stats.unreadable_workers == ["broken"]
    label = BackendLabel(backend.name)
    summaries = await queue_summaries(backend)
    assert next(s for s in summaries if s["name"] == queue.name)["workers"] == 2
    details = await _queue_info(backend, queue.name, label)
    _print_info(details)
    workers = await _workers(backend, [queue.name])
    assert {w["id"]: bool(w.get("unreadable")) for w in workers} == {"broken": True, "fine": False}
    _print({"version": "0", "backend": backend.name, "queues": summaries, "workers": workers}, label)
    printed = capsys.readouterr().out
    assert printed.count("broken") == 2
    assert printed.count("unreadable") == 2


async def test_failing_unreadable_jobs_keeps_only_the_newest_failed_jobs_by_retention(
    backend: BaseBackend, make_queue: Callable[..., Queue]
) -> None:
    queue = make_queue(keep_finished=1)
    first, second = await queue.add(noop.name), await queue.add(noop.name)
    for job_id in (first, second):
        assert await damage(backend, queue.name, job_id, "args")

    await asyncio.wait_for(queue.worker(burst=True, handle_signals=False).run(), WAIT_S)

    assert (await queue.counts())["failed"] == 1
    kept = [await stored_record(backend, queue.name, job_id) for job_id in (first, second)]
    assert sorted(str(record["status"]) if record else "gone" for record in kept) == ["failed", "gone"]


async def test_one_step_of_a_worker_fails_a_garbled_job_and_the_next_step_runs_the_next(
    backend: BaseBackend, queue: Queue
) -> None:
    garbled = await queue.add(noop.name, priority=1)
    fine = await queue.add(noop.name, priority=2)
    assert await damage(backend, queue.name, garbled, "kwargs")
    worker = queue.worker(handle_signals=False)

    assert await worker.process()  # the garbled job, failed
    assert await worker.process()  # the next one, run
    assert not await worker.process()
    assert worker.processed == 2
    assert (await queue.get_job(fine)).status == "completed"
    assert (await queue.counts())["failed"] == 1


async def test_a_job_garbled_while_it_ran_is_failed_with_the_reason_not_lost(
    backend: BaseBackend, queue: Queue
) -> None:
    job_id = await queue.add(noop.name)
    now = time.time()
    assert [job.id for job in (await backend.claim(queue.name, "gone", 1, 30, now, None)).jobs] == [job_id]
    field = "stalls" if await damage(backend, queue.name, job_id, "stalls") else "args"
    if field == "args":  # a store whose counters are typed
        assert await damage(backend, queue.name, job_id, "args")

    recovered = await backend.recover_stalled(queue.name, now + 60, stall_recovery(3, queue.retention))
    await asyncio.wait_for(queue.worker(burst=True, handle_signals=False).run(), WAIT_S)

    record = await stored_record(backend, queue.name, job_id)
    assert record is not None
    assert str(record["status"]) == "failed"
    assert f"malformed {field}" in _error(record)["message"]
    assert [job.id for job in recovered] == [job_id] or field == "args"
    counts = await queue.counts()
    assert (counts["failed"], counts["waiting"], counts["active"]) == (1, 0, 0)
