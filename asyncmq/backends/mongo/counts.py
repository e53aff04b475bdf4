"""Per-queue counts of live jobs (waiting, delayed, active, blocked) and the queue totals, kept beside
the jobs in MongoDB.

MongoDB changes one document atomically, not a job and a counter together, so the backend
counts each change after its job write has answered, with the exact number it moved. The
changes of concurrent operations are added up here and written together, in the
background, in one bulk write: one round trip per burst, not one per operation. Counts
lag a write by that round trip; `settle` waits for them (a process reading its own counts
sees every change it made). A process that dies with changes not yet written leaves its
queue's counts off by them until a recount (`MongoBackend.recount`).

A connection lost mid-write leaves two doubts, and both are settled here, not guessed:
- a count write whose reply was lost may have been applied. Each write carries this
  writer's next sequence number (`w.<writer>` in the shard document), and the same write
  is sent again until it answers: one already applied no longer matches, and counts once;
- a job write whose reply was lost (a claim, an outcome, a recovery) may have moved jobs
  that no one counted. Every such write stamps the jobs it moves; the backend hands the
  stamp and the moves here (`after_lost_reply`), and the jobs found carrying the stamp are
  counted, with the lookup retried until the server answers. The lookup waits `LANDING_S`
  first: a server may still be applying a request whose connection it has lost, and a
  lookup ahead of it would miss its moves for good. Each job keeps the last few stamps, so
  moves that follow at once (another worker claiming a recovered job) do not erase one.
  Each move names the job's task and the totals it adds to (`Move`), so those jobs add to
  the totals as well.

The queue totals (`asyncmq.transitions.TOTALS`: monotonic counts per task) are counted from
the same moves and written in the same bulk write, as fields `t:<total>:<task>` of the same
documents, the task escaped (`%`, `.`, `$` and NUL as `%XX`): a field path cannot hold a
'.' nor start with '$', and a flat name, not a nested document, because nx-27017, the test
server, does not follow a dotted path in `$inc`. Unlike the live counts, they cannot be
counted again from the jobs (retention deletes finished jobs, and a job's past moves leave no
trace): a process that dies with changes not yet written leaves them short for good.

Each process adds to its own shard document (`<queue>#c<shard>`), so concurrent workers do
not queue up on one hot document; a read sums the shards. The same write bumps the queue's
flags document when jobs became ready, which wakes the queue's workers and scheduler
through the change stream (`asyncmq.backends.mongo.waker`). Finished jobs are not counted
here (only their totals): retention bounds them, MongoDB's TTL index deletes them unseen,
and their index counts them exactly.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from dataclasses import field as default
from typing import Any, NamedTuple
from urllib.parse import unquote

from pymongo import UpdateOne
from pymongo.errors import BulkWriteError

from asyncmq.job import JobState
from asyncmq.logging import get_logger

__all__ = ["COUNTED", "SHARDS", "CountsWriter", "Move", "read_totals"]

log = get_logger(__name__)

COUNTED = frozenset({JobState.WAITING, JobState.DELAYED, JobState.ACTIVE, JobState.BLOCKED})
#: The states a job enters ready to be claimed or promoted: its queue's workers and scheduler wake.
_WAKING = frozenset({JobState.WAITING, JobState.DELAYED})
SHARDS = 16
_RETRY_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0)
_DUPLICATE_KEY = 11000
_WRITE_TIMEOUT_S = 5.0
#: How long a write whose reply was lost may take to land (see the module's docstring).
LANDING_S = 1.0
_TOTAL_PREFIX = "t:"
_ESCAPE = str.maketrans({"%": "%25", ".": "%2E", "$": "%24", "\x00": "%00"})


class Move(NamedTuple):
    """A job moved from one state to another (`None`: added, or deleted), with the queue
    totals the move adds to (`asyncmq.transitions.TOTALS`) for the job's task."""

    source: JobState | None
    target: JobState | None
    task: str = "?"
    totals: tuple[str, ...] = ()


def total_field(task: str, total: str) -> str:
    """The shard document's field counting `total` for `task`."""
    return f"{_TOTAL_PREFIX}{total}:{task.translate(_ESCAPE)}"


def read_totals(documents: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, int]]:
    """The queue totals by task then name, summed over a queue's documents."""
    totals: dict[str, dict[str, int]] = {}
    for document in documents:
        for name, n in document.items():
            if name.startswith(_TOTAL_PREFIX):
                total, _, task = name[len(_TOTAL_PREFIX) :].partition(":")
                by_name = totals.setdefault(unquote(task), {})
                by_name[total] = by_name.get(total, 0) + int(n)
    return totals


@dataclass
class _Unsure:
    """A job write whose reply was lost: the jobs it may have moved, by document id."""

    queue: str
    field: str
    stamp: str
    moves: Mapping[str, Move]
    lost_at: float = default(default_factory=time.monotonic)


class CountsWriter:
    def __init__(self, collection: Any, jobs: Any, record: Callable[[str, float], None]) -> None:
        self._collection = collection
        self._jobs = jobs
        self._record = record  # BaseBackend.record_operation
        self.shard = os.getpid() % SHARDS
        self.writer = os.urandom(6).hex()
        self._sequence = 0
        self._pending: dict[str, Counter[str]] = {}
        self._wake: set[str] = set()
        self._unsure: list[_Unsure] = []
        self._marked: set[str] = set()  # shard documents holding this writer's sequence
        self._writing: asyncio.Task[None] | None = None

    def add(self, queue: str, moves: Counter[JobState], totals: Counter[tuple[str, str]]) -> None:
        """Count jobs moved: a state's count changes by `moves[state]`, the total `name` of
        `task` by `totals[task, name]`."""
        counter = self._pending.setdefault(queue, Counter())
        for state, n in moves.items():
            if state in COUNTED and n:
                counter[state.value] += n
                if n > 0 and state in _WAKING:
                    self._wake.add(queue)
        for (task, total), n in totals.items():
            counter[total_field(task, total)] += n
        self._start()

    def after_lost_reply(self, queue: str, field: str, stamp: str, moves: Mapping[str, Move]) -> None:
        """A write stamping `field` with `stamp` on the documents in `moves` failed without an
        answer: count the moves of those found carrying the stamp, once the server answers."""
        self._unsure.append(_Unsure(queue, field, stamp, moves))
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
        sending: tuple[int, dict[str, Counter[str]], set[str]] | None = None
        while self._pending or self._unsure or sending is not None:
            try:
                await self._settle_unsure()
                if sending is None:  # a write not answered is sent again as it was
                    self._sequence += 1
                    sending = (self._sequence, self._pending, self._wake)
                    self._pending, self._wake = {}, set()
                await self._write(*sending)
                sending, attempt = None, 0
            except asyncio.CancelledError:
                if sending is not None:
                    self._merge(sending[1], sending[2])
                raise
            except Exception as exc:
                delay = _RETRY_S[min(attempt, len(_RETRY_S) - 1)]
                attempt += 1
                log.warning("writing MongoDB queue counts failed (%s); retrying in %.2fs", exc, delay)
                await asyncio.sleep(delay)

    async def _settle_unsure(self) -> None:
        """Count the moves that writes with lost replies turn out to have made."""
        while self._unsure:
            unsure = self._unsure[0]
            await asyncio.sleep(unsure.lost_at + LANDING_S - time.monotonic())
            started = time.perf_counter()
            found = await self._jobs.find(
                {"_id": {"$in": list(unsure.moves)}, unsure.field: unsure.stamp}, {"_id": 1}
            ).to_list(None)
            self._record("count", started)
            counter = self._pending.setdefault(unsure.queue, Counter())
            for document in found:
                move = unsure.moves[document["_id"]]
                if move.source in COUNTED:
                    counter[move.source.value] -= 1
                if move.target in COUNTED:
                    counter[move.target.value] += 1
                for total in move.totals:
                    counter[total_field(move.task, total)] += 1
            self._unsure.pop(0)

    def _merge(self, pending: dict[str, Counter[str]], wake: set[str]) -> None:
        for queue, counter in pending.items():
            self._pending.setdefault(queue, Counter()).update(counter)
        self._wake |= wake

    async def _write(self, sequence: int, pending: dict[str, Counter[str]], wake: set[str]) -> None:
        """One bulk write, applied at most once however often it is sent: a shard document
        that already holds this writer's `sequence` no longer matches, and its upsert then
        fails on the duplicate id, which means done."""
        ops = []
        mark = f"w.{self.writer}"
        for queue, counter in pending.items():
            moves = {name: n for name, n in counter.items() if n}  # states and totals
            if moves:
                self._marked.add(f"{queue}#c{self.shard}")
                ops.append(
                    UpdateOne(
                        # Not `{mark: {"$ne": sequence}}`: nx-27017, the test server, does
                        # not match a field missing from an embedded document with it. And
                        # `$and`, not `{_id, $or}`, which it reads as `(_id and a) or b`: the
                        # counts of one queue went to another's document written alongside.
                        {
                            "$and": [
                                {"_id": f"{queue}#c{self.shard}"},
                                {"$or": [{mark: {"$exists": False}}, {mark: {"$lt": sequence}}]},
                            ]
                        },
                        {"$inc": moves, "$set": {mark: sequence}, "$setOnInsert": {"queue": queue}},
                        upsert=True,
                    )
                )
        ops += [
            UpdateOne({"_id": queue}, {"$inc": {"wakes": 1}, "$setOnInsert": {"queue": queue}}, upsert=True)
            for queue in wake
        ]
        if ops:
            started = time.perf_counter()
            try:
                # A write that never answers (a connection left half-open) is sent again.
                async with asyncio.timeout(_WRITE_TIMEOUT_S):  # not wait_for: see `wait_set`
                    await self._collection.bulk_write(ops, ordered=False)
            except BulkWriteError as exc:
                if any(error.get("code") != _DUPLICATE_KEY for error in exc.details.get("writeErrors", [])):
                    raise
            self._record("count", started)

    async def close(self) -> None:
        """Write what is pending (unless the server is gone: then it is lost, and logged)."""
        try:
            async with asyncio.timeout(5):
                await self.settle()
        except Exception:  # a timeout included
            if self._pending:
                log.warning("MongoDB queue counts not written at close: %s", dict(self._pending))
        if self._marked:  # the sequence is needed no more (a killed writer's stays: a few bytes)
            with contextlib.suppress(Exception):
                ids = list(self._marked)
                await self._collection.update_many(
                    {"_id": {"$in": ids}}, {"$unset": {f"w.{self.writer}": ""}}
                )
            self._marked.clear()
        if self._writing is not None:
            self._writing.cancel()
            await asyncio.gather(self._writing, return_exceptions=True)
            self._writing = None
