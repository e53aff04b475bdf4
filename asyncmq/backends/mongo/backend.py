"""The MongoDB backend: a document per job, claimed and finished in batches, woken by change streams.

Built on PyMongo's async API (`pymongo.AsyncMongoClient`); a Motor client is accepted too.
MongoDB updates one document atomically, and that is what every step relies on: a claim
reads the first `limit` waiting jobs, then moves them to `active` with one `update_many`
whose filter names each job with the token it was read with, so a job another worker took
in between (its token moved on) is not matched, never taken twice. Outcomes are one
unordered `bulk_write` per batch, each update matched by the worker's token (fencing).

Collections (in the backend's database):
- `jobs`: `_id` is `<queue>/<job id>`; partial indexes serve the claim (waiting, by
  priority then `seq`), promotion (delayed, by due time), recovery (active, by lease) and
  retention (finished, by state and finish time); a TTL index on `expire_at` deletes
  finished jobs past their retention even when no scheduler runs.
- `queues`: per queue, a flags document (`_id` the queue: paused, rate-limit bucket,
  wake-ups) and the live-state counts and queue totals (`asyncmq.backends.mongo.counts`).
- `repeatables`, `workers`, `events`: `_id` prefixed with `<queue>/`.
Fields of JSON kind (arguments, results, ...) are stored as JSON text: exactly what every
other backend stores, whatever the values (integers past 64 bits, keys BSON refuses).
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import math
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

import orjson

from asyncmq.backends.base import (
    BaseBackend,
    ClaimResult,
    EventWatch,
    JobWatch,
    QueueStats,
    RateLimit,
    UnreadableJob,
    WorkerInfo,
    read_workers,
    redacted_url,
    schedule_record,
)
from asyncmq.backends.mongo.counts import COUNTED, SHARDS, CountsWriter, Move, read_totals
from asyncmq.backends.mongo.deps import FIELDS as DEPS_FIELDS
from asyncmq.backends.mongo.deps import children_clause, deps_fields, read_deps
from asyncmq.backends.mongo.waker import Waker
from asyncmq.deduplication import Deduplicated, Deduplication
from asyncmq.dependencies import add_child, children_of, parent_ended, parent_removed, ref, split_ref
from asyncmq.errors import ConfigurationError, MalformedJobError, UnknownParentError
from asyncmq.job import (
    FIELD_KINDS,
    OUTCOME_FIELDS,
    TERMINAL_STATES,
    Job,
    JobState,
    malformed_reason,
    new_job_id,
)
from asyncmq.logging import get_logger
from asyncmq.schedule import Repeatable
from asyncmq.transitions import DEFAULT_RETENTION, OUTCOME_TOTALS, Retention, StallRecovery, Transition

try:
    from pymongo import AsyncMongoClient, InsertOne, ReturnDocument, UpdateMany, UpdateOne
    from pymongo.errors import AutoReconnect, BulkWriteError, DuplicateKeyError, NetworkTimeout, PyMongoError
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ConfigurationError("the MongoDB backend needs its extra: pip install 'asyncmq[mongo]'") from exc

__all__ = ["MongoBackend", "mongo_backend_from_url"]

log = get_logger(__name__)

#: `deps` is stored as fields of its own (`asyncmq.backends.mongo.deps`).
_JSON_FIELDS = frozenset(name for name, kind in FIELD_KINDS.items() if kind == "json") - {"deps"}
#: What a job document holds besides the job's own fields.
_DOCUMENT_ONLY = frozenset(
    {"_id", "seq", "settled_token", "moved_by", "enqueued_by", "expire_at", *DEPS_FIELDS}
)
_FINISHED = sorted(state.value for state in TERMINAL_STATES)
_STATES = [state.value for state in JobState]
_RECOVER_BATCH = 1000
_CLAIM_ROUNDS = 3
_STAMPS_KEPT = 4
#: Tries of an insert that lost its connection (each waits twice as long: 0.1, 0.2 s).
_INSERT_TRIES = 3
_TRIM_BATCH = 5000
#: The totals a stored job adds to: failed at its add (a parent's end) or not.
_ADDED_TOTALS = {False: ("enqueued",), True: ("enqueued", "failed")}
#: A finished job's TTL index date is left out past this (the datetime range ends in 9999).
_MAX_TTL_S = 1e10
_INDEXES: dict[str, list[tuple[list[tuple[str, int]], dict[str, Any]]]] = {
    "jobs": [
        (
            [("queue", 1), ("priority", 1), ("seq", 1)],
            {"name": "waiting", "partialFilterExpression": {"status": "waiting"}},
        ),
        (
            [("queue", 1), ("delay_until", 1)],
            {"name": "delayed", "partialFilterExpression": {"status": "delayed"}},
        ),
        (
            [("queue", 1), ("lease_until", 1)],
            {"name": "active", "partialFilterExpression": {"status": "active"}},
        ),
        (
            [("queue", 1), ("status", 1), ("finished_at", 1)],
            {"name": "finished", "partialFilterExpression": {"status": {"$in": _FINISHED}}},
        ),
        (
            [("queue", 1), ("seq", 1)],
            {"name": "blocked", "partialFilterExpression": {"status": "blocked"}},
        ),
        ([("expire_at", 1)], {"name": "expire_at", "expireAfterSeconds": 0}),
    ],
    "queues": [([("queue", 1)], {"name": "queue"})],
    "dedup": [([("expire_at", 1)], {"name": "expire_at", "expireAfterSeconds": 0})],
}
#: How long a deduplication key taken for a job being stored counts as held though the job is
#: not there yet: a producer that vanished between taking the key and storing its job blocks
#: the key no longer than this.
_PENDING_S = 10.0
#: Tries of a deduplicated enqueue that keeps losing the key's compare-and-set to others.
_DEDUP_TRIES = 50
#: Tries of a child's release that keeps losing its compare-and-set to other releases of it.
_RELEASE_TRIES = 20
#: The blocked jobs `repair_dependencies` reads at a time.
_REPAIR_BATCH = 1000
#: At most one repair pass per queue in this time, whatever the number of schedulers.
_REPAIR_TURN_S = 20.0
#: A blocked job younger than this whose parent is missing is left alone by the repair pass:
#: its flow's parents may still be on their way (a flow is one unordered insert).
_GONE_AFTER_S = 60.0


class _Sequence:
    """Line order within a priority: the moment a job joins the line in milliseconds, times
    2^20, plus a counter, so jobs added in the same millisecond keep their order in this
    process (as an int64, good until the year 2250)."""

    def __init__(self) -> None:
        self._counter = itertools.count()

    def at(self, moment: float) -> int:
        return (int(moment * 1000) << 20) | (next(self._counter) & 0xFFFFF)


def _encode(name: str, value: Any) -> Any:
    if name in _JSON_FIELDS:
        return orjson.dumps(value).decode()
    return value.value if isinstance(value, JobState) else value


def _job_or_reason(document: dict[str, Any]) -> Job | str:
    """A job from its document, or why the document makes none."""
    record = {name: value for name, value in document.items() if name not in _DOCUMENT_ONLY}
    for name in _JSON_FIELDS & record.keys():
        try:
            record[name] = orjson.loads(record[name])
        except (orjson.JSONDecodeError, TypeError):
            return malformed_reason(f"job document {document.get('_id')!r}", name, record[name])
    try:
        deps = read_deps(document)
    except (TypeError, ValueError):
        shown = {name: document[name] for name in DEPS_FIELDS if name in document}
        return malformed_reason(f"job document {document.get('_id')!r}", "deps", shown)
    if deps is not None:
        record["deps"] = deps
    try:
        return Job.from_record(record)
    except MalformedJobError as exc:
        return f"job document {document.get('_id')!r} is malformed: {exc}"


def _job(document: dict[str, Any] | None) -> Job | None:
    if document is None:
        return None
    found = _job_or_reason(document)
    if isinstance(found, str):
        log.error("skipping a malformed job: %s", found)
        return None
    return found


def _task(document: dict[str, Any]) -> str:
    """The job's task, as the queue totals name it ("?" when the document's is no text)."""
    task = document.get("task")
    return task if type(task) is str else "?"


def _claims(candidates: list[dict[str, Any]], ids: set[str], matched: int) -> list[Move]:
    """The moves of a claim whose update matched `matched` of `candidates`: those found with its
    stamp (`ids`), then, for any it took and lost before it looked (a freeze past the lease:
    no longer stamped), as many of the others in line order (their count exact, their tasks
    the likeliest, not known)."""
    found = [d for d in candidates if d["_id"] in ids]
    lost = [d for d in candidates if d["_id"] not in ids][: matched - len(found)]
    return [Move(JobState.WAITING, JobState.ACTIVE, _task(d), ("claimed",)) for d in found + lost]


def _outcome_move(job: Job) -> Move:
    """A stored outcome: the job leaves `active` for the status it stores, and adds to its total."""
    return Move(JobState.ACTIVE, job.status, job.task, (OUTCOME_TOTALS[job.status],))


def _counted_as(document: dict[str, Any]) -> JobState | None:
    """The live state a job whose status was overwritten was counted in, by the fields each
    state sets: a finish time (finished: not counted), a worker (active), parents pending and
    no ready time (blocked), a due time and no ready time (delayed), otherwise waiting."""
    if document.get("finished_at") is not None:
        return None
    if document.get("worker_id") is not None:
        return JobState.ACTIVE
    if document.get("deps_pending") and document.get("ready_at") is None:
        return JobState.BLOCKED
    if document.get("delay_until") is not None and document.get("ready_at") is None:
        return JobState.DELAYED
    return JobState.WAITING


def _expire_at(finished_at: float | None, retention: Retention) -> datetime | None:
    if finished_at is None or not retention.ttl_s < _MAX_TTL_S:
        return None
    return datetime.fromtimestamp(finished_at + retention.ttl_s, UTC)


def _is_held(key: dict[str, Any], held: dict[str, Any] | None, now: float) -> bool:
    """Whether a deduplication key, as read, is held at `now`; `held`: its holder's document."""
    if key.get("expires_at") is not None:
        return bool(key["expires_at"] > now)
    if held is None:  # not stored yet (pending), or gone
        return bool(key.get("pending_until", 0) > now)
    return held.get("status") not in _FINISHED


def _at(moment: float) -> datetime | None:
    """`moment` as the date a TTL index reads, `None` past the dates' range."""
    return datetime.fromtimestamp(moment, UTC) if moment < _MAX_TTL_S else None


def _moved_by(stamp: str) -> dict[str, Any]:
    """The `$push` recording, on each job a write moves, the write's stamp: the lookup after a
    lost reply finds the jobs the write moved by it (`asyncmq.backends.mongo.counts`). The
    last few are kept, not one: the moves that follow at once (a claim, an outcome) must not
    erase it before the lookup."""
    return {"moved_by": {"$each": [stamp], "$slice": -_STAMPS_KEPT}}


def _parent_view(reference: str, document: Mapping[str, Any]) -> Job:
    """A stored parent as `asyncmq.dependencies.parent_ended` reads it: its status (one that is
    no state reads as not ended) and, completed, its result."""
    queue, job_id = split_ref(reference)
    try:
        status = JobState(document["status"])
    except (KeyError, ValueError):
        status = JobState.WAITING
    result = None
    if status is JobState.COMPLETED and type(document.get("result")) is str:
        try:
            result = orjson.loads(document["result"])
        except orjson.JSONDecodeError:
            log.error("job document %r has a malformed result: its children get None", reference)
    return Job(job_id, queue, "?", status=status, result=result)


def _stored_children(document: Mapping[str, Any]) -> list[str]:
    """The children a job's document names (none when the field is not a list of text)."""
    children = document.get("deps_children")
    if type(children) is not list or not all(type(child) is str for child in children):
        return []
    return children


class _End(NamedTuple):
    """A job that ended (`parent`: its queue, id, status and result), the children its document
    named when it ended, whether it is gone rather than ended (`repair_dependencies`), and
    whether this process removed it before it ended (`asyncmq.dependencies.parent_removed`)."""

    parent: Job
    children: list[str]
    gone: bool = False
    removed: bool = False


def _refuse_unknown(wanted: Mapping[str, str], found: Mapping[str, Any]) -> None:
    """`UnknownParentError` for the first of the parents `wanted` (parent -> a child naming it)
    not `found`."""
    for parent, child_id in wanted.items():
        if parent not in found:
            queue, parent_id = split_ref(parent)
            raise UnknownParentError(
                f"job {child_id} depends on job {parent_id} of queue {queue!r}, which does not "
                "exist: nothing was stored"
            )


def _number(value: Any) -> float:
    return float(value) if type(value) in (int, float) else 0.0


def _pairs(jobs: Iterable[tuple[str, int]]) -> list[dict[str, Any]]:
    """A filter clause per (document id, token): matches each job only while unchanged."""
    return [{"_id": key, "token": token} for key, token in jobs]


class MongoBackend(BaseBackend):
    """Jobs in MongoDB, shared by every process that names the same database.

    `uri_or_client` takes a URL (`mongodb://host:27017`, `mongodb+srv://...`) or a client of
    the caller's: PyMongo's `AsyncMongoClient` or Motor's `AsyncIOMotorClient`. Written for
    MongoDB 6 to 8; change streams (a replica set, even of one member) wake workers within
    milliseconds, and without them (`change_streams=False`, or a standalone server) idle
    workers poll, backing off to `poll_max_s`.
    """

    name = "mongodb"
    supports_dependencies = True

    def __init__(
        self,
        uri_or_client: Any = "mongodb://127.0.0.1:27017",
        *,
        database: str = "asyncmq",
        change_streams: bool | None = None,
        poll_max_s: float = 1.0,
        events_keep: int = 10_000,
        max_connections: int = 20,
    ) -> None:
        super().__init__()
        self._uri = uri_or_client if isinstance(uri_or_client, str) else None
        self._client: Any = None if isinstance(uri_or_client, str) else uri_or_client
        self.database_name = database
        self.change_streams = change_streams
        self.poll_max_s = poll_max_s
        self.events_keep = events_keep
        self.max_connections = max_connections
        self._connected = False
        self._connect_lock = asyncio.Lock()
        self._known_queues: set[str] = set()
        self._seq = _Sequence()
        self._counts: CountsWriter | None = None
        self._waker: Waker | None = None

    def __repr__(self) -> str:
        where = redacted_url(self._uri) if self._uri else type(self._client).__name__
        return f"<MongoBackend {where} database={self.database_name!r}>"

    # -- connection -------------------------------------------------------------------
    def size_for(self, concurrency: int) -> None:
        self.max_connections = max(self.max_connections, concurrency + 6)

    def _build_client(self) -> AsyncMongoClient[Any]:
        """A client on this backend's URL, its options (`tls=true`, ...) left to the driver.
        It connects at its first command."""
        return AsyncMongoClient(self._uri, maxPoolSize=self.max_connections, tz_aware=True, connect=False)

    async def connect(self) -> None:
        if self._connected:
            return
        async with self._connect_lock:
            if self._connected:
                return
            if self._client is None:
                self._client = self._build_client()
            database = self._client[self.database_name]
            self.jobs, self.queues_ = database["jobs"], database["queues"]
            self.repeatables_, self.workers_, self.events_ = (
                database["repeatables"],
                database["workers"],
                database["events"],
            )
            self.dedup = database["dedup"]
            try:
                for name, indexes in _INDEXES.items():
                    for keys, options in indexes:
                        await database[name].create_index(keys, **options)
            except (PyMongoError, KeyError) as exc:
                where = redacted_url(self._uri) if self._uri else "the given client"
                if self._uri is not None:  # ours: closed, so a failed connect leaves no sockets
                    await _maybe_await(self._client.close())
                    self._client = None
                why = str(exc)
                if isinstance(exc, KeyError):  # PyMongo's SCRAM exchange, on a reply it did not expect
                    why = (
                        f"authentication failed: the server's answer had no {exc} field; does it "
                        "check credentials at all? Leave them out of the URL for a server without them"
                    )
                raise ConfigurationError(f"cannot use MongoDB at {where}: {why}") from exc
            self._counts = CountsWriter(self.queues_, self.jobs, self.record_operation)
            self._waker = Waker(
                {
                    "w": (self.queues_, _queue_flags_keys),
                    "d": (self.queues_, _queue_flags_keys),
                    "e": (self.events_, _event_keys),
                    "r": (self.jobs, _job_end_keys),
                },
                change_streams=self.change_streams,
                poll_max_s=self.poll_max_s,
                pipelines={"r": _JOB_ENDS},
            )
            self._connected = True

    async def close(self) -> None:
        async with self._connect_lock:
            if not self._connected:
                return
            self._connected = False
            assert self._counts is not None
            assert self._waker is not None
            await self._counts.close()
            await self._waker.close()
            if self._uri is not None:
                await _maybe_await(self._client.close())
                self._client = None

    @property
    def counts_writer(self) -> CountsWriter:
        if self._counts is None:
            raise ConfigurationError("MongoBackend is not connected: await backend.connect() first")
        return self._counts

    @property
    def waker(self) -> Waker:
        if self._waker is None:
            raise ConfigurationError("MongoBackend is not connected: await backend.connect() first")
        return self._waker

    async def _call(self, operation: str, call: Any) -> Any:
        """Await one round trip, counted under `operation`."""
        started = time.perf_counter()
        result = await call
        self.record_operation(operation, started)
        return result

    async def _find(
        self, operation: str, collection: Any, *args: Any, sort: Any = None, limit: int = 0, skip: int = 0
    ) -> list[dict[str, Any]]:
        cursor = collection.find(*args)
        if sort:
            cursor = cursor.sort(sort)
        if skip:
            cursor = cursor.skip(skip)
        if limit:
            cursor = cursor.limit(limit)
        found: list[dict[str, Any]] = await self._call(operation, cursor.to_list(None))
        return found

    async def _unsure_on_error(
        self,
        operation: str,
        call: Any,
        queue: str,
        stamp: str,
        moves: Mapping[str, Move],
    ) -> Any:
        """Await a write that stamps the jobs it moves (`_moved_by`); if it fails without an
        answer, the jobs it did move are counted later (see `asyncmq.backends.mongo.counts`)."""
        try:
            return await self._call(operation, call)
        except PyMongoError:
            self.counts_writer.after_lost_reply(queue, "moved_by", stamp, moves)
            raise

    async def _stamped(
        self, operation: str, documents: list[dict[str, Any]], stamp: str, field: str = "moved_by"
    ) -> set[str]:
        """The ids, among `documents`, that a write marking `field` with `stamp` changed: when a
        batch write matched fewer than it named, which ones it got."""
        ids = [document["_id"] for document in documents]
        found = await self._find(operation, self.jobs, {"_id": {"$in": ids}, field: stamp}, {"_id": 1})
        return {document["_id"] for document in found}

    async def _stamped_or_unsure(
        self,
        operation: str,
        documents: list[dict[str, Any]],
        queue: str,
        stamp: str,
        moves: Mapping[str, Move],
    ) -> set[str]:
        """`_stamped`, after a write that answered; if the lookup fails, the jobs the write
        moved are counted later, as after a lost reply."""
        try:
            return await self._stamped(operation, documents, stamp)
        except PyMongoError:
            self.counts_writer.after_lost_reply(queue, "moved_by", stamp, moves)
            raise

    async def _remember_queue(self, queue: str) -> None:
        if queue not in self._known_queues:
            await self.connect()
            await self._call(
                "remember_queue",
                self.queues_.update_one({"_id": queue}, {"$setOnInsert": {"queue": queue}}, upsert=True),
            )
            self._known_queues.add(queue)

    def _moved(self, queue: str, moves: Iterable[Move]) -> None:
        """Count jobs moved from one state to another, and the queue totals they add to."""
        counter: Counter[JobState] = Counter()
        totals: Counter[tuple[str, str]] = Counter()
        for move in moves:
            if move.source is not None:
                counter[move.source] -= 1
            if move.target is not None:
                counter[move.target] += 1
            for total in move.totals:
                totals[move.task, total] += 1
        if totals or any(state in COUNTED for state in counter):
            self.counts_writer.add(queue, counter, totals)
        if counter.get(JobState.WAITING, 0) > 0:
            self.waker.wake(f"w:{queue}")
        if counter.get(JobState.DELAYED, 0) > 0:
            self.waker.wake(f"d:{queue}")

    # -- producing --------------------------------------------------------------------
    def _document(self, job: Job, now: float) -> dict[str, Any]:
        document: dict[str, Any] = {"_id": f"{job.queue}/{job.id}"}
        for name, value in job.to_record().items():
            if value is not None and name != "deps":
                document[name] = _encode(name, value)
        if job.deps:
            document.update(deps_fields(job.deps))
        joins_line_at = job.delay_until if job.status is JobState.DELAYED and job.delay_until else now
        document["seq"] = self._seq.at(joins_line_at)
        return document

    async def enqueue(self, jobs: Sequence[Job], *, connection: Any = None) -> list[bool]:
        """One unordered bulk insert; an id already stored is reported `False`, not raised.
        A connection lost mid-insert is retried (an insert is idempotent by job id): the
        documents carry the call's stamp, so an id refused on the retry because the first
        try stored it counts as stored, not as someone else's."""
        self.refuse_connection(connection)
        if not jobs:
            return []
        for queue in {job.queue for job in jobs}:
            await self._remember_queue(queue)
        now, stamp = time.time(), new_job_id()
        linked: dict[str, list[str]] = {}
        if any(job.deps for job in jobs):
            jobs, linked = await self._depend(jobs, now)
        documents = [{**self._document(job, now), "enqueued_by": stamp} for job in jobs]
        refused = await self._insert(documents, stamp)
        stored = [index not in refused for index in range(len(jobs))]
        for queue in {job.queue for job in jobs}:
            self._moved(
                queue,
                (
                    Move(None, job.status, job.task, _ADDED_TOTALS[job.status is JobState.FAILED])
                    for job, ok in zip(jobs, stored, strict=True)
                    if ok and job.queue == queue
                ),
            )
        if linked:
            refs = {ref(job.queue, job.id) for job, ok in zip(jobs, stored, strict=True) if ok}
            await self._parents_ended_meanwhile(linked, refs, now)
        self.failed_by_parents(
            [job for job, ok in zip(jobs, stored, strict=True) if ok and job.status is JobState.FAILED]
        )
        return stored

    # -- dependencies (`asyncmq.dependencies`) ----------------------------------------
    # MongoDB has no transaction here: a parent's end and its children's release are separate
    # steps, each one document's atomic update, made safe by their order rather than by one
    # step. A producer appends a child to its stored parents (`deps_children`) before storing
    # it and looks at those parents again after (`_parents_ended_meanwhile`); a step that ends
    # a job writes it only while it has the children it knows of (`children_clause`), then
    # releases each (`_apply_ends`). So a parent ending at the same moment is seen by one side
    # or both (a release is idempotent), and a process that dies between the two steps leaves
    # children blocked until the scheduler's `repair_dependencies`, never for good.
    async def _depend(self, jobs: Sequence[Job], now: float) -> tuple[list[Job], dict[str, list[str]]]:
        """The call's jobs as they are to be stored (copies): each child resolved by its parents
        that ended, and recorded on those still pending, in the document of a parent earlier in
        the call, else appended now to the stored parent's `deps_children`. Returns the jobs
        and, by stored parent, the children appended to it. `UnknownParentError`, with nothing
        stored, for a parent neither stored nor earlier in the call."""
        earlier: set[str] = set()
        wanted: dict[str, str] = {}  # stored parent -> the first child naming it
        for job in jobs:
            for parent in job.deps["parents"] if job.deps else ():
                if parent not in earlier:
                    wanted.setdefault(parent, job.id)
            earlier.add(ref(job.queue, job.id))
        found: dict[str, dict[str, Any]] = {}
        if wanted:
            query = {"_id": {"$in": list(wanted)}}
            found = {
                d["_id"]: d for d in await self._find("enqueue", self.jobs, query, {"status": 1, "result": 1})
            }
            _refuse_unknown(wanted, found)
        in_call: dict[str, Job] = {}
        linked: dict[str, list[str]] = {}
        out = []
        for job in jobs:
            job = job.clone()
            reference = ref(job.queue, job.id)
            if job.deps:
                job.deps = copy.deepcopy(job.deps)
                self._resolve_at_add(job, in_call, found, linked, now)
            in_call[reference] = job
            out.append(job)
        if linked:
            appending = [
                UpdateOne({"_id": parent}, {"$addToSet": {"deps_children": {"$each": children}}})
                for parent, children in linked.items()
            ]
            result = await self._call("enqueue", self.jobs.bulk_write(appending, ordered=False))
            if result.matched_count < len(linked):  # deleted since it was read
                query = {"_id": {"$in": list(linked)}}
                still = {d["_id"]: d for d in await self._find("enqueue", self.jobs, query, {"_id": 1})}
                _refuse_unknown({parent: wanted[parent] for parent in linked}, still)
        return out, linked

    @staticmethod
    def _resolve_at_add(
        job: Job,
        in_call: Mapping[str, Job],
        found: Mapping[str, dict[str, Any]],
        linked: dict[str, list[str]],
        now: float,
    ) -> None:
        assert job.deps is not None
        for reference in list(job.deps["pending"]):
            parent = in_call.get(reference)
            stored = parent is None
            if parent is None:
                parent = _parent_view(reference, found[reference])
            parent_ended(job, parent, now)
            if job.status is not JobState.BLOCKED:  # failed, or released: nothing more pending
                return
            if reference in job.deps["pending"]:
                if stored:
                    linked.setdefault(reference, []).append(ref(job.queue, job.id))
                else:
                    add_child(parent, job)

    async def _parents_ended_meanwhile(
        self, linked: Mapping[str, list[str]], stored: set[str], now: float
    ) -> None:
        """Look again at the stored parents the children just stored were appended to: one
        that ended after it was read may have ended before the child was stored, when its
        release found no child to release."""
        query = {"_id": {"$in": list(linked)}, "status": {"$in": _FINISHED}}
        ended = await self._find("enqueue", self.jobs, query, {"status": 1, "result": 1})
        ends = []
        for document in ended:
            children = [child for child in linked[document["_id"]] if child in stored]
            if children:
                ends.append(_End(_parent_view(document["_id"], document), children))
        if ends:
            await self._apply_ends(ends, now)

    async def _apply_ends(self, ends: list[_End], now: float) -> None:
        """Apply each ended job's end to its children, and a failed child's to its own in turn;
        then the `job:failed` events of the children that failed. Idempotent: a child no
        longer blocked, or no longer waiting for that parent, is left as it is."""
        failed: list[Job] = []
        while ends:
            end = ends.pop()
            query = {
                "_id": {"$in": end.children},
                "status": "blocked",
                "deps_pending": ref(end.parent.queue, end.parent.id),
            }
            documents = await self._find("dependencies", self.jobs, query)
            for child in await asyncio.gather(*(self._child_end(d, end, now) for d in documents)):
                if child is not None:
                    failed.append(child)
                    if grandchildren := children_of(child):
                        ends.append(_End(child, grandchildren))
        self.failed_by_parents(failed)

    async def _child_end(self, document: dict[str, Any], end: _End, now: float) -> Job | None:
        """Apply `end` to one blocked child (`asyncmq.dependencies.parent_ended`), compare-and-set
        on its token: every change of a blocked job bumps it (no worker holds one to fence),
        so a release of another parent made meanwhile makes this one read the child again.
        Returns the child if it failed, as stored."""
        reference = ref(end.parent.queue, end.parent.id)
        for _ in range(_RELEASE_TRIES):
            child = _job(document)
            if child is None or child.deps is None:
                return None
            token, children, pending = child.token, children_of(child), list(child.deps["pending"])
            if end.removed:
                failed = parent_removed(child, end.parent.queue, end.parent.id, now)
            else:
                failed = parent_ended(child, end.parent, now)
            if child.status is JobState.BLOCKED and child.deps["pending"] == pending:
                return None  # on_parent_failure="wait"
            where: dict[str, Any] = {"_id": document["_id"], "status": "blocked", "token": token}
            if failed:  # its own end reaches the children it has when it fails
                where.update(children_clause(children))
                if end.gone:
                    child.error = {
                        "type": "ParentFailedError",
                        "message": f"parent job {end.parent.id} of queue {end.parent.queue!r} is gone: "
                        "deleted before its end reached this job",
                    }
            released = await self._call(
                "dependencies", self.jobs.update_one(where, self._release(child, end, failed, now))
            )
            if released.matched_count:
                child.token += 1
                self._moved(
                    child.queue,
                    [Move(JobState.BLOCKED, child.status, child.task, ("failed",) if failed else ())],
                )
                if failed:
                    self._ended(child.queue, [child.id])
                    return child
                return None
            query = {"_id": document["_id"], "status": "blocked", "deps_pending": reference}
            document = await self._call("dependencies", self.jobs.find_one(query))
            if document is None:
                return None
        log.warning(
            "job %s kept changing while its parent's end reached it: left to the repair pass", document["_id"]
        )
        return None

    def _release(self, child: Job, end: _End, failed: bool, now: float) -> dict[str, Any]:
        """The update of a child that `end` reached, as `parent_ended` left it. A failed child
        gets no `expire_at`: its queue's retention is not known here (it may be another queue),
        and the purge of its queue's scheduler applies it."""
        values: dict[str, Any] = {"status": child.status.value}
        update: dict[str, Any] = {"$set": values, "$inc": {"token": 1}}
        if failed:
            values.update(finished_at=now, error=_encode("error", child.error))
            return update
        assert child.deps is not None
        values["deps_pending"] = child.deps["pending"]
        if child.status is JobState.WAITING:
            values["ready_at"], values["seq"] = now, self._seq.at(now)
        elif child.status is JobState.DELAYED:
            values["seq"] = self._seq.at(child.delay_until or now)
        if end.parent.status is JobState.COMPLETED:
            update["$push"] = {"deps_results": [end.parent.id, _encode("result", end.parent.result)]}
        return update

    async def repair_dependencies(self, queue: str, now: float) -> None:
        """Apply to the queue's blocked jobs the ends of their parents that never reached them (a
        process that died between a parent's end and its children's release), and treat a
        parent that is gone as one that ended without completing. One pass per queue every
        `_REPAIR_TURN_S`, whichever scheduler comes first."""
        await self.connect()
        try:
            turn = await self._call(
                "repair",
                self.queues_.update_one(
                    {  # `$and`: nx-27017, the test server, reads `{_id, $or}` as `(_id and a) or b`
                        "$and": [
                            {"_id": f"{queue}#deps"},
                            {
                                "$or": [
                                    {"repair_at": {"$exists": False}},
                                    {"repair_at": {"$lte": now - _REPAIR_TURN_S}},
                                ]
                            },
                        ]
                    },
                    {"$set": {"repair_at": now}, "$setOnInsert": {"queue": queue}},
                    upsert=True,
                ),
            )
        except DuplicateKeyError:
            return  # another scheduler's turn
        if not turn.matched_count and turn.upserted_id is None:
            return
        after: dict[str, Any] = {}
        while True:
            blocked = await self._find(
                "repair",
                self.jobs,
                {"queue": queue, "status": "blocked", **after},
                {"deps_pending": 1, "created_at": 1, "seq": 1},
                sort=[("seq", 1), ("_id", 1)],
                limit=_REPAIR_BATCH,
            )
            if blocked:
                await self._repair(blocked, now)
            if len(blocked) < _REPAIR_BATCH:
                return
            last = blocked[-1]  # pages in line order (`seq`), the id telling apart equal ones
            after = {
                "$or": [{"seq": {"$gt": last["seq"]}}, {"seq": last["seq"], "_id": {"$gt": last["_id"]}}]
            }

    async def _repair(self, blocked: list[dict[str, Any]], now: float) -> None:
        waiting_on: dict[str, list[str]] = {}
        for document in blocked:
            pending = document.get("deps_pending")
            for parent in pending if type(pending) is list else ():
                if type(parent) is str:
                    waiting_on.setdefault(parent, []).append(document["_id"])
        query = {"_id": {"$in": list(waiting_on)}}
        parents = {
            d["_id"]: d for d in await self._find("repair", self.jobs, query, {"status": 1, "result": 1})
        }
        old = {d["_id"] for d in blocked if _number(d.get("created_at")) < now - _GONE_AFTER_S}
        ends = []
        for reference, children in waiting_on.items():
            parent = parents.get(reference)
            if parent is None:
                children = [child for child in children if child in old]
                if children:
                    queue, job_id = split_ref(reference)
                    ends.append(_End(Job(job_id, queue, "?", status=JobState.FAILED), children, gone=True))
            elif parent.get("status") in _FINISHED:
                ends.append(_End(_parent_view(reference, parent), children))
        if ends:
            await self._apply_ends(ends, now)

    async def _insert(self, documents: list[dict[str, Any]], stamp: str) -> set[int]:
        """Insert; return the indexes of documents whose id another call had taken."""
        attempt = 0
        while True:
            try:
                await self._call(
                    "enqueue", self.jobs.bulk_write([InsertOne(d) for d in documents], ordered=False)
                )
                return set()
            except BulkWriteError as exc:
                errors = exc.details.get("writeErrors", [])
                if any(error.get("code") != 11000 for error in errors):
                    raise
                refused = {error["index"] for error in errors}
                if attempt == 0:
                    return refused
                try:
                    ours = await self._stamped(
                        "enqueue", [documents[i] for i in refused], stamp, "enqueued_by"
                    )
                except PyMongoError:
                    self._inserts_unsure(documents, stamp)
                    raise
                return {index for index in refused if documents[index]["_id"] not in ours}
            except (AutoReconnect, NetworkTimeout):
                attempt += 1
                if attempt == _INSERT_TRIES:
                    self._inserts_unsure(documents, stamp)
                    raise
                await asyncio.sleep(0.05 * 2**attempt)

    def _inserts_unsure(self, documents: list[dict[str, Any]], stamp: str) -> None:
        """Inserts not known to be stored: those found with the call's stamp are counted later."""
        for queue in {d["queue"] for d in documents}:
            moves = {
                d["_id"]: Move(None, JobState(d["status"]), _task(d), ("enqueued",))
                for d in documents
                if d["queue"] == queue
            }
            self.counts_writer.after_lost_reply(queue, "enqueued_by", stamp, moves)

    # -- deduplication ----------------------------------------------------------------
    # A key is a document in `dedup` (`_id` `<queue>/<key>`): the holder's `job_id`, its
    # `expires_at` (and `expire_at`, for the TTL index) when it has a ttl, and `write`, a stamp
    # each write replaces, that the next write compares and sets: producers of one key that
    # race each read it, and only the first write of a decision lands; the others decide
    # again. A key taken for a job is written before the job (MongoDB has no transaction
    # here), marked `pending_until` meanwhile: held though its job is not there yet. A
    # duplicate and a delayed holder removed for a new job are counted in the queue totals
    # (`deduplicated`, `debounced`) as every move is: written behind by the counts writer
    # (`asyncmq.backends.mongo.counts`), once the decision is taken.
    async def enqueue_deduplicated(
        self,
        job: Job,
        deduplication: Deduplication,
        now: float,
        *,
        connection: Any = None,
        retention: Retention = DEFAULT_RETENTION,
    ) -> Deduplicated:
        self.refuse_connection(connection)
        await self._remember_queue(job.queue)
        key_id = f"{job.queue}/{deduplication.id}"
        replaced = None
        for _ in range(_DEDUP_TRIES):
            key = await self._call("deduplicate", self.dedup.find_one({"_id": key_id}))
            if key is None:
                stamp = new_job_id()
                try:
                    taken = self._dedup_key(key_id, job, deduplication.expires_at(now), stamp, now)
                    await self._call("deduplicate", self.dedup.insert_one(taken))
                except DuplicateKeyError:
                    continue  # another producer took it first
                return await self._store_holding(job, key_id, stamp, None, replaced)
            holder = key["job_id"]
            held = await self._find_one_job(job.queue, holder)
            if holder == job.id and held is not None and held.get("created_at") == job.created_at:
                return Deduplicated(True, job.id)  # this very store, sent again
            is_held = _is_held(key, held, now)
            if is_held and deduplication.replace and held is not None and held.get("status") == "delayed":
                if job.id != holder and await self._find_one_job(job.queue, job.id) is not None:
                    return Deduplicated(False, None)
                if not await self._remove_delayed(job, holder):
                    continue  # promoted meanwhile: no longer replaceable
                replaced = holder
                expires_at = deduplication.expires_in_place_of(key.get("expires_at"), now)
            elif is_held:
                if deduplication.extend and deduplication.ttl_s is not None:
                    await self._extend_key(key, now + deduplication.ttl_s)
                self._moved(job.queue, [Move(None, None, job.task, ("deduplicated",))])
                return Deduplicated(False, holder)
            elif await self._find_one_job(job.queue, job.id) is not None:
                return Deduplicated(False, None)
            else:
                expires_at = deduplication.expires_at(now)
            took = await self._take_key(key, job, expires_at, now)
            if took is not None:
                return await self._store_holding(job, key_id, took, key, replaced)
        raise ConfigurationError(
            f"deduplication id {deduplication.id!r} of queue {job.queue!r} changed hands "
            f"{_DEDUP_TRIES} times while this job was being added: nothing stored, try again"
        )

    async def _remove_delayed(self, job: Job, job_id: str) -> bool:
        """Remove a job if it is still delayed (the holder `job` replaces), as `remove_job`,
        counted as `job`'s debounce: a delayed holder leaves only by one, so the queue's
        `enqueued` less `debounced` stays the jobs it stored, even when producers racing for
        the key leave this one's job a duplicate after all."""
        queue = job.queue
        removed = await self._call(
            "deduplicate", self.jobs.find_one_and_delete({"_id": f"{queue}/{job_id}", "status": "delayed"})
        )
        if removed is None:
            return False
        self._moved(queue, [Move(JobState.DELAYED, None, job.task, ("debounced",))])
        self._ended(queue, [job_id])
        await self._removed([removed], time.time())
        return True

    async def _extend_key(self, key: dict[str, Any], expires_at: float) -> None:
        """Restart a key's ttl, unless it changed since it was read (then it was taken anew)."""
        extended = {"expires_at": expires_at, "expire_at": _at(expires_at)}
        await self._call(
            "deduplicate",
            self.dedup.update_one({"_id": key["_id"], "write": key["write"]}, {"$set": extended}),
        )

    def _dedup_key(
        self, key_id: str, job: Job, expires_at: float | None, stamp: str, now: float
    ) -> dict[str, Any]:
        document: dict[str, Any] = {"_id": key_id, "queue": job.queue, "job_id": job.id, "write": stamp}
        document["pending_until"] = now + _PENDING_S
        if expires_at is not None:
            document["expires_at"], document["expire_at"] = expires_at, _at(expires_at)
        return document

    async def _take_key(
        self, key: dict[str, Any], job: Job, expires_at: float | None, now: float
    ) -> str | None:
        """Compare-and-set the key, as read, to `job`; the new write's stamp, `None` if it moved."""
        stamp = new_job_id()
        taken = self._dedup_key(key["_id"], job, expires_at, stamp, now)
        result = await self._call(
            "deduplicate", self.dedup.replace_one({"_id": key["_id"], "write": key["write"]}, taken)
        )
        return stamp if result.matched_count else None

    async def _store_holding(
        self, job: Job, key_id: str, stamp: str, previous: dict[str, Any] | None, replaced: str | None
    ) -> Deduplicated:
        """Store the job whose key write `stamp` took; the key is given back as it was if the
        job cannot be stored (its id exists, or the store failed)."""
        try:
            (stored,) = await self.enqueue([job])
        except BaseException:
            await self._give_back(key_id, stamp, previous)
            raise
        if not stored:
            await self._give_back(key_id, stamp, previous)
            return Deduplicated(False, None)
        await self._call(
            "deduplicate",
            self.dedup.update_one({"_id": key_id, "write": stamp}, {"$unset": {"pending_until": ""}}),
        )
        return Deduplicated(True, job.id, replaced)

    async def _give_back(self, key_id: str, stamp: str, previous: dict[str, Any] | None) -> None:
        taken = {"_id": key_id, "write": stamp}
        if previous is None:
            await self._call("deduplicate", self.dedup.delete_one(taken))
        else:
            await self._call("deduplicate", self.dedup.replace_one(taken, previous))

    async def _find_one_job(self, queue: str, job_id: str) -> dict[str, Any] | None:
        found: dict[str, Any] | None = await self._call(
            "deduplicate", self.jobs.find_one({"_id": f"{queue}/{job_id}"}, {"status": 1, "created_at": 1})
        )
        return found

    async def deduplication_holder(self, queue: str, deduplication_id: str, now: float) -> str | None:
        await self.connect()
        key = await self._call(
            "deduplication_holder", self.dedup.find_one({"_id": f"{queue}/{deduplication_id}"})
        )
        if key is None:
            return None
        held = None if key.get("expires_at") is not None else await self._find_one_job(queue, key["job_id"])
        return str(key["job_id"]) if _is_held(key, held, now) else None

    async def remove_deduplication_key(self, queue: str, deduplication_id: str) -> bool:
        await self.connect()
        result = await self._call(
            "remove_deduplication_key", self.dedup.delete_one({"_id": f"{queue}/{deduplication_id}"})
        )
        return bool(result.deleted_count)

    # -- consuming --------------------------------------------------------------------
    async def claim(
        self, queue: str, worker_id: str, limit: int, lease_s: float, now: float, rate: RateLimit | None
    ) -> ClaimResult:
        await self.connect()
        flags = await self._call("claim", self.queues_.find_one({"_id": queue})) or {}
        if flags.get("paused"):
            return ClaimResult([])
        if rate is not None:
            limit, wait_s = await self._take_tokens(queue, flags, limit, rate, now)
            if wait_s is not None:
                return ClaimResult([], wait_s)
        claimed = await self._claim_waiting(queue, worker_id, limit, now + lease_s)
        if rate is not None and len(claimed) < limit:
            await self._call(
                "claim", self.queues_.update_one({"_id": queue}, {"$inc": {"tokens": limit - len(claimed)}})
            )
        if claimed:
            self.waker.worked(f"w:{queue}")
        result = ClaimResult([])
        for document in claimed:
            found = _job_or_reason(document)
            if isinstance(found, Job) and document["_id"] != f"{queue}/{found.id}":
                found = f"job document {document['_id']!r} has a malformed id: {found.id!r:.100}"
            if isinstance(found, str):
                job_id = document["_id"].split("/", 1)[1]
                result.unreadable.append(
                    UnreadableJob(job_id, queue, document.get("token"), found, _task(document))
                )
            else:
                result.jobs.append(found)
        return result

    async def _claim_waiting(
        self, queue: str, worker_id: str, limit: int, lease_until: float
    ) -> list[dict[str, Any]]:
        """Read the first `limit` waiting jobs, then take those still as read, in one update.
        Jobs another worker took in between are skipped and the line is read again, up to
        `_CLAIM_ROUNDS` times; a claim that still lost races leaves its worker's next wait to
        return at once, since jobs may be waiting that no wake-up will announce."""
        claimed: list[dict[str, Any]] = []
        for _ in range(_CLAIM_ROUNDS):
            candidates = await self._find(
                "claim",
                self.jobs,
                {"queue": queue, "status": "waiting"},
                sort=[("priority", 1), ("seq", 1)],
                limit=limit - len(claimed),
            )
            if not candidates:
                break
            # Counters that are not numbers (a document changed by hand) would fail the whole
            # update: those jobs are taken without counting, for the worker to fail them.
            garbled = [
                d for d in candidates if type(d.get("attempt", 0)) is not int or type(d["token"]) is not int
            ]
            if garbled:
                skipped = {d["_id"] for d in garbled}
                candidates = [d for d in candidates if d["_id"] not in skipped]
                claimed += await self._take(queue, garbled, worker_id, lease_until, count=False)
            taken = await self._take(queue, candidates, worker_id, lease_until, count=True)
            lost = len(taken) < len(candidates)
            claimed += taken
            if not lost or len(claimed) == limit:
                break
        else:
            self.waker.wake(f"w:{queue}")
        return claimed

    async def _take(
        self, queue: str, candidates: list[dict[str, Any]], worker_id: str, lease_until: float, *, count: bool
    ) -> list[dict[str, Any]]:
        """Make active those of `candidates` still waiting as read (bumping `attempt` and
        `token` when `count`), in one update; return those this call took."""
        if not candidates:
            return []
        stamp = new_job_id()
        update: dict[str, Any] = {
            "$set": {"status": "active", "worker_id": worker_id, "lease_until": lease_until},
            "$push": _moved_by(stamp),
        }
        if count:
            update["$inc"] = {"attempt": 1, "token": 1}
        claiming = self.jobs.update_many(
            {"status": "waiting", "$or": _pairs((d["_id"], d["token"]) for d in candidates)}, update
        )
        moves = {
            d["_id"]: Move(JobState.WAITING, JobState.ACTIVE, _task(d), ("claimed",)) for d in candidates
        }
        taken = await self._unsure_on_error("claim", claiming, queue, stamp, moves)
        ids = set(moves)
        if taken.matched_count < len(candidates):  # which did this claim get? the stamp tells
            ids = await self._stamped_or_unsure("claim", candidates, queue, stamp, moves)
        self._moved(queue, _claims(candidates, ids, taken.matched_count))
        candidates = [d for d in candidates if d["_id"] in ids]
        for document in candidates:
            document.update(status="active", worker_id=worker_id, lease_until=lease_until)
            if count:
                document["attempt"] = document.get("attempt", 0) + 1
                document["token"] += 1
        return candidates

    async def _take_tokens(
        self, queue: str, flags: dict[str, Any], limit: int, rate: RateLimit, now: float
    ) -> tuple[int, float | None]:
        """Take up to `limit` starts from the queue's token bucket, compare-and-set on its
        flags document; (0, seconds to wait) when not one is available."""
        per_s = rate.limit / rate.interval_s
        for _ in range(20):
            tokens, at = flags.get("tokens"), flags.get("tokens_at")
            available = min(
                float(rate.limit),
                (rate.limit if tokens is None else tokens) + max(0.0, now - (at or now)) * per_s,
            )
            if available < 1:
                return 0, (1 - available) / per_s
            granted = min(limit, int(available))
            try:
                result = await self._call(
                    "claim",
                    self.queues_.update_one(
                        {"_id": queue, "tokens": tokens, "tokens_at": at},
                        {
                            "$set": {"tokens": available - granted, "tokens_at": now},
                            "$setOnInsert": {"queue": queue},
                        },
                        upsert=True,
                    ),
                )
                if result.matched_count or result.upserted_id is not None:
                    return granted, None
            except DuplicateKeyError:
                pass  # another worker changed the bucket first
            flags = await self._call("claim", self.queues_.find_one({"_id": queue})) or {}
            if flags.get("paused"):
                return 0, None
        return 0, 1 / per_s

    async def fail_unreadable(
        self, jobs: Sequence[UnreadableJob], now: float, retention: Retention
    ) -> list[bool]:
        await self.connect()
        failed = []
        ends = []
        for job in jobs:  # rare: one update each, to learn which were failed (and their children)
            update = self._failure(job.reason, now, retention)
            if type(job.token) is int:
                update["$inc"] = {"token": 1}
            before = await self._call(
                "fail_unreadable",
                self.jobs.find_one_and_update(
                    {"_id": f"{job.queue}/{job.id}", "status": "active", "token": job.token},
                    update,
                    projection={"deps_children": 1},
                ),
            )
            failed.append(before is not None)
            if before is not None:
                self._moved(job.queue, [Move(JobState.ACTIVE, JobState.FAILED, job.task, ("failed",))])
                if children := _stored_children(before):
                    ends.append(_End(job.failed(now), children))
        for queue in {job.queue for job, ok in zip(jobs, failed, strict=True) if ok}:
            await self._trim(queue, JobState.FAILED.value, retention.keep)
        if ends:
            await self._apply_ends(ends, now)
        return failed

    async def wait_for_jobs(self, queue: str, timeout_s: float) -> None:
        await self.connect()
        await self.waker.wait(f"w:{queue}", timeout_s)

    def _outcome(self, job: Job, retention: Retention, stamp: str, now: float) -> UpdateOne:
        values: dict[str, Any] = {"status": job.status.value, "settled_token": job.token}
        cleared = {"lease_until": "", "worker_id": ""}
        for name in OUTCOME_FIELDS:
            value = getattr(job, name)
            if value is None:
                cleared[name] = ""
            else:
                values[name] = _encode(name, value)
        if job.status is JobState.WAITING:
            values["seq"] = self._seq.at(now)
        elif job.status is JobState.DELAYED:
            values["seq"] = self._seq.at(job.delay_until or now)
        elif (expire_at := _expire_at(job.finished_at, retention)) is not None:
            values["expire_at"] = expire_at
        where: dict[str, Any] = {"_id": f"{job.queue}/{job.id}", "token": job.token}
        if job.status in TERMINAL_STATES:  # an end, written only with the children it releases
            where.update(children_clause(children_of(job)))
        return UpdateOne(
            where, {"$set": values, "$unset": cleared, "$inc": {"token": 1}, "$push": _moved_by(stamp)}
        )

    async def finish(self, jobs: Sequence[Job], retention: Retention) -> list[bool]:
        if not jobs:
            return []
        await self.connect()
        stamp, now = new_job_id(), time.time()
        settled = await self._store_outcomes(jobs, retention, stamp, now)
        if settled is None:
            accepted, now_settled = [True] * len(jobs), [True] * len(jobs)
        else:
            accepted, now_settled = [], []
            for job in jobs:
                document = settled.get(f"{job.queue}/{job.id}", {})
                accepted.append(document.get("settled_token") == job.token)
                now_settled.append(stamp in document.get("moved_by", ()))
        for queue in {job.queue for job in jobs}:
            self._moved(
                queue,
                (
                    _outcome_move(job)
                    for job, ok in zip(jobs, now_settled, strict=True)
                    if ok and job.queue == queue
                ),
            )
            for state in {job.status for job in jobs if job.queue == queue and job.status in TERMINAL_STATES}:
                await self._trim(queue, state.value, retention.keep)
            self._ended(queue, (j.id for j in jobs if j.queue == queue and j.status in TERMINAL_STATES))
        ends = [
            _End(job, children_of(job))
            for job, ok in zip(jobs, accepted, strict=True)
            if ok and job.status in TERMINAL_STATES and children_of(job)
        ]
        if ends:
            await self._apply_ends(ends, now)
        return accepted

    async def _store_outcomes(
        self, jobs: Sequence[Job], retention: Retention, stamp: str, now: float
    ) -> dict[str, dict[str, Any]] | None:
        """Write the outcomes in one bulk write; `None` when every one was stored, else the
        documents as they are after it (which were stored: their stamp tells). An end is written
        only while the job has the children its worker's copy names (`_outcome`): a job that
        gained children since its claim is written again with them, so that its end reaches
        every child (a producer appends a child before it looks at the parent: see `_depend`)."""
        writing = list(jobs)
        while True:
            try:
                ops = [self._outcome(job, retention, stamp, now) for job in writing]
                result = await self._call("finish", self.jobs.bulk_write(ops, ordered=False))
                if result.matched_count == len(jobs):
                    return None
                # lost leases, the same batch sent again, or ends of jobs that gained children
                found = await self._find(
                    "finish",
                    self.jobs,
                    {"_id": {"$in": [f"{j.queue}/{j.id}" for j in jobs]}},
                    {"settled_token": 1, "moved_by": 1, "status": 1, "token": 1, "deps_children": 1},
                )
            except PyMongoError:  # which outcomes were stored, the stamp tells once the server answers
                for queue in {job.queue for job in jobs}:
                    moves = {f"{j.queue}/{j.id}": _outcome_move(j) for j in jobs if j.queue == queue}
                    self.counts_writer.after_lost_reply(queue, "moved_by", stamp, moves)
                raise
            settled = {d["_id"]: d for d in found}
            writing = []
            for job in jobs:
                document = settled.get(f"{job.queue}/{job.id}", {})
                children = _stored_children(document)
                if (
                    job.status in TERMINAL_STATES
                    and document.get("status") == "active"
                    and document.get("token") == job.token
                    and children != children_of(job)
                ):
                    job.deps = {**(job.deps or {}), "children": children}
                    writing.append(job)
            if not writing:
                return settled

    async def _trim(self, queue: str, status: str, keep: int) -> int:
        """Delete all but the newest `keep` jobs of a finished state, when there are more."""
        removed = 0
        while True:
            extra = await self._find(
                "trim",
                self.jobs,
                {"queue": queue, "status": status},
                {"_id": 1},
                sort=[("finished_at", -1)],
                skip=keep,
                limit=_TRIM_BATCH,
            )
            if not extra:
                return removed
            result = await self._call(
                "trim", self.jobs.delete_many({"_id": {"$in": [d["_id"] for d in extra]}, "status": status})
            )
            removed += int(result.deleted_count)
            if len(extra) < _TRIM_BATCH:
                return removed

    def _transition_update(self, transition: Transition, now: float, retention: Retention) -> dict[str, Any]:
        values: dict[str, Any] = {"status": transition.target.value}
        cleared = {name: "" for name in transition.clear}
        for name in transition.stamp:
            values[name] = now
        for name, value in transition.assign.items():
            if value is None:
                cleared[name] = ""
            else:
                values[name] = _encode(name, value)
        if "ready_at" in transition.stamp:  # joins the line now, at its end
            values["seq"] = self._seq.at(now)
        if transition.target in TERMINAL_STATES:
            if (expire_at := _expire_at(now, retention)) is not None:
                values["expire_at"] = expire_at
        else:
            cleared["expire_at"] = ""
        update: dict[str, Any] = {"$set": values, "$inc": {"token": 1, **transition.add}}
        if cleared:
            update["$unset"] = cleared
        return update

    async def release(self, jobs: Sequence[Job], transition: Transition, now: float) -> None:
        if not jobs:
            return
        if transition.totals:  # which jobs it moved, an update of many does not tell
            raise ValueError("a release counts no queue totals: RELEASE does not")
        await self.connect()
        stamp = new_job_id()
        update = {
            **self._transition_update(transition, now, Retention(math.inf, 0)),
            "$push": _moved_by(stamp),
        }
        sources = [state.value for state in transition.sources]
        for queue in {job.queue for job in jobs}:
            mine = [(f"{j.queue}/{j.id}", j.token) for j in jobs if j.queue == queue]
            releasing = self.jobs.update_many({"status": {"$in": sources}, "$or": _pairs(mine)}, update)
            moves = {key: Move(JobState.ACTIVE, transition.target) for key, _ in mine}
            result = await self._unsure_on_error("release", releasing, queue, stamp, moves)
            self._moved(
                queue, (Move(JobState.ACTIVE, transition.target) for _ in range(result.matched_count))
            )

    async def heartbeat(self, worker: WorkerInfo, jobs: Sequence[Job], lease_until: float) -> list[str]:
        await self._remember_queue(worker.queue)
        info = {name: getattr(worker, name) for name in WorkerInfo.__dataclass_fields__}
        alive = self.workers_.update_one(
            {"_id": f"{worker.queue}/{worker.id}"},
            {"$set": {"queue": worker.queue, "info": info, "expires_at": worker.expires_at}},
            upsert=True,
        )
        await self._call("heartbeat", alive)
        if not jobs:
            return []
        pairs = [(f"{job.queue}/{job.id}", job.token) for job in jobs]
        held = await self._call(
            "heartbeat",
            self.jobs.update_many(
                {"status": "active", "$or": _pairs(pairs)}, {"$set": {"lease_until": lease_until}}
            ),
        )
        if held.matched_count == len(jobs):
            return []
        still = await self._find(
            "heartbeat", self.jobs, {"status": "active", "$or": _pairs(pairs)}, {"_id": 1}
        )
        kept = {d["_id"] for d in still}
        return [job.id for job, (key, _) in zip(jobs, pairs, strict=True) if key not in kept]

    async def remove_worker(self, worker: WorkerInfo) -> None:
        await self.connect()
        await self._call("remove_worker", self.workers_.delete_one({"_id": f"{worker.queue}/{worker.id}"}))

    async def save_progress(self, job: Job) -> bool:
        await self.connect()
        result = await self._call(
            "progress",
            self.jobs.update_one(
                {"_id": f"{job.queue}/{job.id}", "token": job.token, "status": "active"},
                {"$set": {"progress": _encode("progress", job.progress)}},
            ),
        )
        return bool(result.matched_count)

    # -- scheduling -------------------------------------------------------------------
    async def promote_due(self, queue: str, now: float, limit: int) -> tuple[int, float | None]:
        await self.connect()
        due = await self._find(
            "promote",
            self.jobs,
            {"queue": queue, "status": "delayed", "delay_until": {"$lte": now}},
            {"_id": 1, "token": 1},
            sort=[("delay_until", 1)],
            limit=limit,
        )
        promoted = 0
        if due:
            result = await self._call(
                "promote",
                self.jobs.update_many(
                    {"status": "delayed", "$or": _pairs((d["_id"], d["token"]) for d in due)},
                    {"$set": {"status": "waiting", "ready_at": now}, "$inc": {"token": 1}},
                ),
            )
            promoted = result.matched_count
            self._moved(queue, (Move(JobState.DELAYED, JobState.WAITING) for _ in range(promoted)))
        following = await self._find(
            "promote",
            self.jobs,
            {"queue": queue, "status": "delayed", "delay_until": {"$gt": now}},
            {"delay_until": 1},
            sort=[("delay_until", 1)],
            limit=1,
        )
        return promoted, following[0]["delay_until"] if following else None

    async def wait_for_schedule(self, queue: str, timeout_s: float) -> None:
        await self.connect()
        await self.waker.wait(f"d:{queue}", timeout_s)

    async def recover_stalled(self, queue: str, now: float, recovery: StallRecovery) -> list[Job]:
        await self.connect()
        recovered = await self._fail_lost_states(queue, now, recovery.retention)
        return recovered + await self._recover_active(queue, now, recovery)

    async def _fail_lost_states(self, queue: str, now: float, retention: Retention) -> list[Job]:
        """Fail the jobs whose status is no state at all (a document changed by hand): no
        query of a state finds them, so they would never run nor show. Each is still counted
        as the state it was in, which its other fields tell (`_counted_as`)."""
        lost = await self._find(
            "recover", self.jobs, {"queue": queue, "status": {"$nin": _STATES}}, limit=_RECOVER_BATCH
        )
        failed = []
        ends = []
        for document in lost:
            reason = (
                f"job document {document['_id']!r} has a malformed status: {document.get('status')!r:.100}"
            )
            log.error("a job of queue %r fails: %s", queue, reason)
            update = self._failure(reason, now, retention)
            children = _stored_children(document)
            where = {"_id": document["_id"], "status": document.get("status"), **children_clause(children)}
            done = await self._call("recover", self.jobs.update_one(where, update))
            if done.modified_count:
                if children:
                    ended = Job(document["_id"].split("/", 1)[1], queue, "?", status=JobState.FAILED)
                    ends.append(_End(ended, children))
                self._moved(
                    queue, [Move(_counted_as(document), JobState.FAILED, _task(document), ("failed",))]
                )
                document.update(update["$set"])
                document.pop("lease_until", None)
                document.pop("worker_id", None)
                failed.append(document)
        if ends:
            await self._apply_ends(ends, now)
        return [job for document in failed if (job := _job(document)) is not None]

    @staticmethod
    def _failure(reason: str, now: float, retention: Retention) -> dict[str, Any]:
        """The update failing a job whose document cannot be read, with the reason; the
        rest of the document stays as it is, for inspection."""
        error = orjson.dumps({"type": MalformedJobError.__name__, "message": reason}).decode()
        values: dict[str, Any] = {"status": "failed", "finished_at": now, "error": error}
        if (expire_at := _expire_at(now, retention)) is not None:
            values["expire_at"] = expire_at
        return {"$set": values, "$unset": {"lease_until": "", "worker_id": ""}}

    async def _recover_active(self, queue: str, now: float, recovery: StallRecovery) -> list[Job]:
        stalled = await self._find(
            "recover",
            self.jobs,
            {"queue": queue, "status": "active", "lease_until": {"$lt": now}},
            sort=[("lease_until", 1)],
            limit=_RECOVER_BATCH,
        )
        if not stalled:
            return []
        stamp = new_job_id()
        ops, chosen = [], []
        moves: dict[str, Move] = {}
        garbled: dict[str, UnreadableJob] = {}
        for document in stalled:
            stalls = document.get("stalls", 0)
            if type(stalls) is int and type(document["token"]) is int:
                transition = recovery.transition_for(stalls)
                update = self._transition_update(transition, now, recovery.retention)
                totals = transition.totals
            else:  # counters changed by hand: failed with the reason, not counted on
                transition = recovery.fail
                field = "token" if type(stalls) is int else "stalls"
                reason = malformed_reason(f"job document {document['_id']!r}", field, document.get(field))
                update = self._failure(reason, now, recovery.retention)
                totals = ("failed",)  # as a claimed job failed for its record
                job_id = document["_id"].split("/", 1)[1]
                garbled[document["_id"]] = UnreadableJob(
                    job_id, queue, document["token"], reason, _task(document)
                )
            update["$push"] = _moved_by(stamp)
            where = {"_id": document["_id"], "token": document["token"], "status": "active"}
            if transition.target in TERMINAL_STATES:  # one that gained children meanwhile: next pass
                where.update(children_clause(_stored_children(document)))
            ops.append(UpdateOne(where, update))
            chosen.append(transition)
            moves[document["_id"]] = Move(JobState.ACTIVE, transition.target, _task(document), totals)
        recovering = self.jobs.bulk_write(ops, ordered=False)
        result = await self._unsure_on_error("recover", recovering, queue, stamp, moves)
        ids = set(moves)
        if result.matched_count < len(stalled):  # another scheduler recovered some first
            ids = await self._stamped_or_unsure("recover", stalled, queue, stamp, moves)
        taken = [d["_id"] in ids for d in stalled]
        self._moved(queue, (moves[d["_id"]] for d, ok in zip(stalled, taken, strict=True) if ok))
        recovered: list[Job] = []
        ends = []
        for document, transition, ok in zip(stalled, chosen, taken, strict=True):
            if not ok:
                continue
            if transition.target in TERMINAL_STATES and (children := _stored_children(document)):
                ended = Job(document["_id"].split("/", 1)[1], queue, "?", status=transition.target)
                ends.append(_End(ended, children))
            if document["_id"] in garbled:  # for the job:failed event
                recovered.append(garbled[document["_id"]].failed(now))
                continue
            job = _job(document)
            if job is not None:
                transition.apply(job, now)
                recovered.append(job)
        if any(transition.target in TERMINAL_STATES for transition in chosen):
            await self._trim(queue, JobState.FAILED.value, recovery.retention.keep)
        if ends:
            await self._apply_ends(ends, now)
        return recovered

    async def add_repeatable(self, repeatable: Repeatable) -> bool:
        await self._remember_queue(repeatable.queue)
        document = {
            "_id": f"{repeatable.queue}/{repeatable.key}",
            "queue": repeatable.queue,
            "record": orjson.dumps(repeatable.to_record()).decode(),
            "next_run_at": repeatable.next_run_at,
        }
        try:
            await self._call("add_repeatable", self.repeatables_.insert_one(document))
        except DuplicateKeyError:
            return False
        self.counts_writer.wake(repeatable.queue)
        self.waker.wake(f"d:{repeatable.queue}")
        return True

    async def remove_repeatable(self, queue: str, key: str) -> bool:
        await self.connect()
        result = await self._call(
            "remove_repeatable", self.repeatables_.delete_one({"_id": f"{queue}/{key}"})
        )
        return bool(result.deleted_count)

    async def stored_repeatables(self, queue: str) -> list[tuple[str, object]]:
        await self.connect()
        documents = await self._find("repeatables", self.repeatables_, _prefixed(queue), sort=[("_id", 1)])
        return [
            (
                document["_id"].partition("/")[2],
                schedule_record(document.get("record"), document.get("next_run_at")),
            )
            for document in documents
        ]

    async def advance_repeatable(self, queue: str, key: str, expected_at: float, next_at: float) -> bool:
        await self.connect()
        result = await self._call(
            "advance_repeatable",
            self.repeatables_.update_one(
                {"_id": f"{queue}/{key}", "next_run_at": {"$in": [expected_at, next_at]}},
                {"$set": {"next_run_at": next_at}},
            ),
        )
        return bool(result.matched_count)

    # -- control and inspection -------------------------------------------------------
    async def set_paused(self, queue: str, paused: bool) -> None:
        await self.connect()
        await self._call(
            "resume" if not paused else "pause",
            self.queues_.update_one(
                {"_id": queue}, {"$set": {"paused": paused}, "$setOnInsert": {"queue": queue}}, upsert=True
            ),
        )
        self._known_queues.add(queue)
        if not paused:  # the update itself wakes other processes' workers
            self.waker.wake(f"w:{queue}")

    async def transition(
        self, queue: str, job_id: str, transition: Transition, now: float, retention: Retention
    ) -> Job | None:
        await self.connect()
        key = f"{queue}/{job_id}"
        before = await self._call(
            "transition",
            self.jobs.find_one_and_update(
                {"_id": key, "status": {"$in": [state.value for state in transition.sources]}},
                self._transition_update(transition, now, retention),
                return_document=ReturnDocument.BEFORE,
            ),
        )
        if before is None:  # not in a source state; or this very transition, sent again
            if not transition.stamp:
                return None
            again = await self._call(
                "transition",
                self.jobs.find_one({"_id": key, "status": transition.target.value, transition.stamp[0]: now}),
            )
            return _job(again)
        self._moved(
            queue, [Move(JobState(before["status"]), transition.target, _task(before), transition.totals)]
        )
        job = _job(before)
        if job is not None:
            transition.apply(job, now)
        if transition.target in TERMINAL_STATES:
            await self._trim(queue, transition.target.value, retention.keep)
            self._ended(queue, [job_id])
            if children := _stored_children(before):  # as stored at its end: the update returned them
                ended = Job(job_id, queue, "?", status=transition.target)
                await self._apply_ends([_End(ended, children)], now)
        return job

    async def get_job(self, queue: str, job_id: str) -> Job | None:
        await self.connect()
        document = await self._call("get_job", self.jobs.find_one({"_id": f"{queue}/{job_id}"}))
        if document is None:
            return None
        found = _job_or_reason(document)
        if isinstance(found, Job) and found.id != job_id:
            found = f"job document {document['_id']!r} has a malformed id: {found.id!r:.100}"
        if isinstance(found, str):
            raise MalformedJobError(found)
        return found

    async def list_jobs(self, queue: str, state: JobState, limit: int, offset: int = 0) -> list[Job]:
        await self.connect()
        order = {
            JobState.WAITING: [("priority", 1), ("seq", 1)],
            JobState.DELAYED: [("delay_until", 1)],
            JobState.ACTIVE: [("lease_until", 1)],
            JobState.BLOCKED: [("seq", 1), ("_id", 1)],
        }.get(state, [("finished_at", -1)])
        documents = await self._find(
            "list_jobs",
            self.jobs,
            {"queue": queue, "status": state.value},
            sort=order,
            skip=offset,
            limit=limit,
        )
        return [job for document in documents if (job := _job(document)) is not None]

    async def remove_job(self, queue: str, job_id: str, retention: Retention = DEFAULT_RETENTION) -> bool:
        await self.connect()
        removed = await self._call(
            "remove_job",
            self.jobs.find_one_and_delete({"_id": f"{queue}/{job_id}", "status": {"$ne": "active"}}),
        )
        if removed is None:
            return False
        self._moved(queue, [Move(JobState(removed["status"]), None)])
        self._ended(queue, [job_id])
        await self._removed([removed], time.time())
        return True

    async def _removed(self, documents: Sequence[Mapping[str, Any]], now: float) -> None:
        """Tell the blocked children of the jobs this process just deleted, those that had not
        ended, that they were removed (`parent_removed`). A process that dies first leaves them
        to `repair_dependencies`, which fails them once their parent has been gone a while."""
        ends = []
        for document in documents:
            children = _stored_children(document)
            if children and document.get("status") not in _FINISHED:
                queue, job_id = split_ref(document["_id"])
                ends.append(_End(Job(job_id, queue, "?", status=JobState.FAILED), children, removed=True))
        if ends:
            await self._apply_ends(ends, now)

    async def drain(
        self, queue: str, include_delayed: bool = False, retention: Retention = DEFAULT_RETENTION
    ) -> int:
        """Jobs with children are deleted one by one first, each read as it is deleted, so that
        their children are told (`_removed`); then the others, in one delete per state."""
        await self.connect()
        removed, now = 0, time.time()
        filters: list[tuple[JobState, dict[str, Any]]] = [(JobState.WAITING, {})]
        if include_delayed:
            filters.append((JobState.DELAYED, {"repeat_key": None}))  # None: the field is absent
        parents: list[dict[str, Any]] = []
        for state, only in filters:
            query = {"queue": queue, "status": state.value, "deps_children": {"$exists": True}, **only}
            for found in await self._find("drain", self.jobs, query, {"_id": 1}):
                document = await self._call(
                    "drain", self.jobs.find_one_and_delete({"_id": found["_id"], "status": state.value})
                )
                if document is not None:
                    parents.append(document)
                    self._moved(queue, [Move(state, None)])
                    removed += 1
        for state, only in filters:
            result = await self._call(
                "drain", self.jobs.delete_many({"queue": queue, "status": state.value, **only})
            )
            self._moved(queue, (Move(state, None) for _ in range(result.deleted_count)))
            removed += result.deleted_count
        await self._removed(parents, now)
        return removed

    async def purge_finished(self, queue: str, now: float, retention: Retention) -> int:
        """Delete finished jobs past their retention (the TTL index does it too, when MongoDB's
        monitor comes by: once a minute), then all but the newest `keep` of each state."""
        await self.connect()
        removed = 0
        for status in _FINISHED:
            result = await self._call(
                "purge",
                self.jobs.delete_many(
                    {"queue": queue, "status": status, "finished_at": {"$lt": now - retention.ttl_s}}
                ),
            )
            removed += result.deleted_count
            await self._trim(queue, status, retention.keep)
        await self._trim_events(queue)
        return removed

    async def delete_queue(self, queue: str) -> None:
        await self.connect()
        self.counts_writer.forget(queue)
        await self.counts_writer.settle()  # a count write on its way would make the queue again
        await self._call("delete_queue", self.jobs.delete_many(_prefixed(queue)))
        for collection in (self.repeatables_, self.workers_, self.events_, self.dedup):
            await self._call("delete_queue", collection.delete_many(_prefixed(queue)))
        await self._call("delete_queue", self.queues_.delete_many({"queue": queue}))
        self._known_queues.discard(queue)

    async def stats(self, queue: str, now: float) -> QueueStats:
        await self.connect()
        await self.counts_writer.settle()
        queue_docs, finished, heads, workers = await asyncio.gather(
            self._find("stats", self.queues_, {"queue": queue}),
            self._aggregate(
                "stats",
                [
                    {"$match": {"queue": queue, "status": {"$in": _FINISHED}}},
                    {"$group": {"_id": "$status", "n": {"$sum": 1}}},
                ],
            ),
            self._aggregate(  # the first in line of each priority: the oldest of it
                "stats",
                [
                    {"$match": {"queue": queue, "status": "waiting"}},
                    {"$sort": {"priority": 1, "seq": 1}},
                    {"$group": {"_id": "$priority", "ready_at": {"$first": "$ready_at"}}},
                ],
            ),
            self._find(
                "stats", self.workers_, {"queue": queue, "expires_at": {"$gte": now}}, sort=[("_id", 1)]
            ),
        )
        counts = dict.fromkeys((state.value for state in JobState), 0)
        paused = False
        for document in queue_docs:
            if document["_id"] == queue:
                paused = bool(document.get("paused"))
            for state in COUNTED:
                counts[state.value] += int(document.get(state.value, 0))
        for group in finished:
            counts[group["_id"]] = int(group["n"])
        oldest = min(
            (group["ready_at"] for group in heads if group.get("ready_at") is not None), default=None
        )
        found, unreadable = read_workers(
            (document["_id"].split("/", 1)[-1], document.get("info")) for document in workers
        )
        return QueueStats(counts, oldest, paused, found, unreadable, read_totals(queue_docs))

    async def _aggregate(self, operation: str, pipeline: list[dict[str, Any]]) -> list[dict[str, Any]]:
        cursor = await _maybe_await(self.jobs.aggregate(pipeline))
        found: list[dict[str, Any]] = await self._call(operation, cursor.to_list(None))
        return found

    async def recount(self, queue: str) -> None:
        """Count the queue's live jobs again, from the jobs themselves. For a queue whose
        counts a killed process left off (see `asyncmq.backends.mongo.counts`); changes made
        while it counts may be missed, so run it while the queue is quiet. The queue totals
        stay as they are: they count past moves, which the jobs do not record (and retention
        deletes finished jobs), so nothing could count them again."""
        await self.connect()
        await self.counts_writer.settle()
        exact = {}
        for state in COUNTED:
            exact[state.value] = await self._call(
                "recount", self.jobs.count_documents({"queue": queue, "status": state.value})
            )
        await self._call(
            "recount",
            self.queues_.bulk_write(
                [
                    UpdateMany(
                        {"_id": {"$in": [f"{queue}#c{shard}" for shard in range(SHARDS)]}},
                        {"$unset": dict.fromkeys(exact, "")},
                    ),
                    UpdateOne(
                        {"_id": f"{queue}#c{self.counts_writer.shard}"},
                        {"$set": {"queue": queue, **exact}},
                        upsert=True,
                    ),
                ],
                ordered=True,
            ),
        )

    async def queues(self) -> list[str]:
        await self.connect()
        names: list[str] = await self._call("queues", self.queues_.distinct("queue"))
        return sorted(names)

    # -- cross-process events ---------------------------------------------------------
    # -- results ----------------------------------------------------------------------
    async def watch_job(self, queue: str, job_id: str) -> JobWatch:
        """A change stream on the jobs, open while this process waits for any (see `Waker`);
        without change streams, the jobs this process ends still wake its waiters at once."""
        await self.connect()
        key = f"r:{queue}/{job_id}"
        watch = EventWatch(lambda ended: self.waker.unwatch(key, ended.event))
        try:
            await self.waker.watch(key, watch.event)
        except BaseException:
            await watch.close()
            raise
        return watch

    def _ended(self, queue: str, job_ids: Iterable[str]) -> None:
        """Wake this process's waiters of jobs it ended (no change stream needed for those)."""
        if self._waker is not None and self._waker.watches:
            for job_id in job_ids:
                self._waker.wake(f"r:{queue}/{job_id}")

    async def publish_events(self, events: Sequence[tuple[str, dict[str, Any]]]) -> None:
        if not events:
            return
        await self.connect()
        by_queue: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        for name, payload in events:
            by_queue.setdefault(payload["queue"], []).append((name, payload))
        for queue, mine in by_queue.items():
            counter = await self._call(
                "publish_events",
                self.queues_.find_one_and_update(
                    {"_id": f"{queue}#events"},
                    {"$inc": {"position": len(mine)}, "$setOnInsert": {"queue": queue}},
                    upsert=True,
                    return_document=ReturnDocument.AFTER,
                ),
            )
            first = int(counter["position"]) - len(mine) + 1
            documents = [
                {
                    "_id": _event_id(queue, first + i),
                    "name": name,
                    "payload": orjson.dumps(payload, default=str).decode(),
                }
                for i, (name, payload) in enumerate(mine)
            ]
            await self._call("publish_events", self.events_.insert_many(documents, ordered=True))

    async def read_events(
        self, queue: str, after: str, block_s: float
    ) -> list[tuple[str, str, dict[str, Any]]]:
        await self.connect()
        if after == "$":
            counter = await self._call("read_events", self.queues_.find_one({"_id": f"{queue}#events"}))
            after = str(int(counter["position"]) if counter else 0)
        query = {"_id": {"$gt": _event_id(queue, int(after)), "$lt": f"{queue}0"}}
        documents = await self._find("read_events", self.events_, query, sort=[("_id", 1)], limit=1000)
        if not documents and block_s > 0:
            await self.waker.wait(f"e:{queue}", block_s)
            documents = await self._find("read_events", self.events_, query, sort=[("_id", 1)], limit=1000)
        return [
            (str(int(d["_id"].rsplit("/", 1)[1])), d["name"], orjson.loads(d["payload"])) for d in documents
        ]

    async def _trim_events(self, queue: str) -> None:
        counter = await self._call("trim_events", self.queues_.find_one({"_id": f"{queue}#events"}))
        if counter is None or int(counter["position"]) <= self.events_keep:
            return
        last_gone = _event_id(queue, int(counter["position"]) - self.events_keep)
        await self._call(
            "trim_events", self.events_.delete_many({"_id": {"$gte": f"{queue}/", "$lte": last_gone}})
        )


def _prefixed(queue: str) -> dict[str, Any]:
    """Every document whose id starts with `<queue>/`: '/' and '0' are neighbours in ASCII,
    and no queue name holds a '/', so the range holds this queue's documents and no other's."""
    return {"_id": {"$gte": f"{queue}/", "$lt": f"{queue}0"}}


def _event_id(queue: str, position: int) -> str:
    return f"{queue}/{position:016d}"


def _queue_flags_keys(document_id: Any) -> tuple[str, ...] | None:
    """A queue's flags document changed (jobs became ready, a schedule changed, resumed):
    wake its workers and scheduler. Its counts and event counter (`<queue>#...`) wake nobody."""
    if not isinstance(document_id, str) or "#" in document_id:
        return None
    return (f"w:{document_id}", f"d:{document_id}")


#: The changes of jobs that may wake `Queue.result` waiters: a job deleted, or updated into a
#: final state. Said without `$or`, which the test server's change streams lack: an update that
#: sets a status other than a final one does not match, nor one that sets `lease_until` (a
#: claim, a heartbeat) without a status. A server that does not describe updates sends them all.
_JOB_ENDS: list[dict[str, Any]] = [
    {
        "$match": {
            "operationType": {"$in": ["update", "replace", "delete"]},
            "updateDescription.updatedFields.status": {
                "$nin": sorted(state.value for state in JobState if state not in TERMINAL_STATES)
            },
            "updateDescription.updatedFields.lease_until": {"$exists": False},
        }
    }
]


def _job_end_keys(document_id: Any) -> tuple[str, ...] | None:
    return (f"r:{document_id}",) if isinstance(document_id, str) else None


def _event_keys(document_id: Any) -> tuple[str, ...] | None:
    if not isinstance(document_id, str):
        return None
    return (f"e:{document_id.rsplit('/', 1)[0]}",)


async def _maybe_await(value: Any) -> Any:
    """PyMongo's async API returns coroutines where Motor returns the thing itself."""
    return await value if asyncio.iscoroutine(value) or isinstance(value, asyncio.Future) else value


def mongo_backend_from_url(url: str) -> MongoBackend:
    """`mongodb://host:27017/DB` or `mongodb+srv://...`: the path names the database (default
    asyncmq); the query's options go to the client."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    database = parts.path.strip("/") or "asyncmq"
    return MongoBackend(urlunsplit(parts._replace(path="/")), database=database)
