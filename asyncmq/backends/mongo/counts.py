"""Per-queue counts of live jobs (waiting, delayed, active), kept beside the jobs in MongoDB.

MongoDB changes one document atomically, not a job and a counter together, so the backend
counts each change after its job write has answered, with the exact number it moved. The
changes of concurrent operations are added up here and written together, in the
background, in one bulk write: one round trip per burst, not one per operation. Counts
lag a write by that round trip; `settle` waits for them (a process reading its own counts
sees every change it made). A process that dies with changes not yet written leaves its
queue's counts off by them until a recount (`MongoBackend.recount`).

Each process adds to its own shard document (`<queue>#c<shard>`), so concurrent workers do
not queue up on one hot document; a read sums the shards. The same write bumps the queue's
flags document when jobs became ready, which wakes the queue's workers and scheduler
through the change stream (`asyncmq.backends.mongo.waker`). Finished jobs are not counted
here: retention bounds them, MongoDB's TTL index deletes them unseen, and their index
counts them exactly.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from pymongo import UpdateOne

from asyncmq.job import JobState
from asyncmq.logging import get_logger

__all__ = ["COUNTED", "SHARDS", "CountsWriter"]

log = get_logger(__name__)

COUNTED = frozenset({JobState.WAITING, JobState.DELAYED, JobState.ACTIVE})
SHARDS = 16
_RETRY_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0)


class CountsWriter:
    def __init__(self, collection: Any, record: Callable[[str, float], None]) -> None:
        self._collection = collection
        self._record = record  # BaseBackend.record_operation
        self.shard = os.getpid() % SHARDS
        self._pending: dict[str, Counter[str]] = {}
        self._wake: set[str] = set()
        self._writing: asyncio.Task[None] | None = None

    def add(self, queue: str, moves: Counter[JobState]) -> None:
        """Count jobs moved: a state's count changes by `moves[state]`."""
        counter = self._pending.setdefault(queue, Counter())
        for state, n in moves.items():
            if state in COUNTED and n:
                counter[state.value] += n
                if n > 0 and state is not JobState.ACTIVE:
                    self._wake.add(queue)
        self._start()

    def wake(self, queue: str) -> None:
        """Wake the queue's workers and scheduler in every process (a schedule changed, ...)."""
        self._wake.add(queue)
        self._pending.setdefault(queue, Counter())
        self._start()

    def forget(self, queue: str) -> None:
        self._pending.pop(queue, None)
        self._wake.discard(queue)

    def _start(self) -> None:
        if self._writing is None or self._writing.done():
            self._writing = asyncio.get_running_loop().create_task(self._write_all())

    async def settle(self) -> None:
        """Until every change counted so far is written."""
        while self._writing is not None and not self._writing.done():
            await asyncio.shield(self._writing)

    async def _write_all(self) -> None:
        attempt = 0
        while self._pending:
            pending, wake = self._pending, self._wake
            self._pending, self._wake = {}, set()
            try:
                await self._write(pending, wake)
                attempt = 0
            except asyncio.CancelledError:
                self._merge(pending, wake)
                raise
            except Exception as exc:
                self._merge(pending, wake)
                delay = _RETRY_S[min(attempt, len(_RETRY_S) - 1)]
                attempt += 1
                log.warning("writing MongoDB queue counts failed (%s); retrying in %.2fs", exc, delay)
                await asyncio.sleep(delay)

    def _merge(self, pending: dict[str, Counter[str]], wake: set[str]) -> None:
        for queue, counter in pending.items():
            self._pending.setdefault(queue, Counter()).update(counter)
        self._wake |= wake

    async def _write(self, pending: dict[str, Counter[str]], wake: set[str]) -> None:
        ops = []
        for queue, counter in pending.items():
            moves = {state: n for state, n in counter.items() if n}
            if moves:
                ops.append(
                    UpdateOne(
                        {"_id": f"{queue}#c{self.shard}"},
                        {"$inc": moves, "$setOnInsert": {"queue": queue}},
                        upsert=True,
                    )
                )
        ops += [
            UpdateOne({"_id": queue}, {"$inc": {"wakes": 1}, "$setOnInsert": {"queue": queue}}, upsert=True)
            for queue in wake
        ]
        if ops:
            started = time.perf_counter()
            await self._collection.bulk_write(ops, ordered=False)
            self._record("count", started)

    async def close(self) -> None:
        """Write what is pending (unless the server is gone: then it is lost, and logged)."""
        try:
            await asyncio.wait_for(self.settle(), 5)
        except Exception:  # a timeout included
            if self._pending:
                log.warning("MongoDB queue counts not written at close: %s", dict(self._pending))
        if self._writing is not None:
            self._writing.cancel()
            await asyncio.gather(self._writing, return_exceptions=True)
            self._writing = None
