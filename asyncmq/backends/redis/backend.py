"""The Redis backend: every state transition one Lua script, every batch one round trip.

Layout, per queue, all under the hash tag `{queue}` so a queue lives in one cluster slot:

    <prefix>:{q}:job:<id>      hash, one field per job field (`asyncmq.job.encode_flat`)
    <prefix>:{q}:waiting       zset, score priority * 2^40 + arrival sequence (claim order)
    <prefix>:{q}:since         zset, ready_at of each waiting job (oldest waiting age)
    <prefix>:{q}:delayed       zset, score delay_until
    <prefix>:{q}:blocked       zset, score when it was added: jobs waiting for their parents
                               (`asyncmq.dependencies`; the job's `deps` field, common.lua)
    <prefix>:{q}:active        zset, score lease_until (stalled jobs are the lowest)
    <prefix>:{q}:<finished>    zsets completed/failed/expired/cancelled, score the end of the
                               result retention, when the job hash's own TTL deletes it
    <prefix>:{q}:notify        list holding at most one marker: idle workers BLPOP it
    <prefix>:{q}:schedule      the same for schedulers, pushed when a sooner delayed job arrives
    <prefix>:{q}:meta          hash: paused flag, rate-limit bucket
    <prefix>:{q}:repeat(:next) hashes: schedules and their next firing time
    <prefix>:{q}:workers(:info) zset of live workers by expiry, and their descriptions
    <prefix>:{q}:events        stream of published lifecycle events, capped near `events_maxlen`
    <prefix>:{q}:totals        hash: the queue totals (`asyncmq.transitions.TOTALS`), field
                               `<total>:<task>`, added to by the script that makes each move
    <prefix>:{q}:waits(:<id>)  `Queue.result` waiters: a flag that any wait, and per job the
                               processes waiting for it (watch.lua)
    <prefix>:{q}:ended:<proc>  list of ids of jobs that ended, for one waiting process
    <prefix>:{q}:dedup:<key>   the id of the job holding a deduplication key, expiring with
                               the key's ttl (dedup.lua)
    <prefix>:queues            set of queue names (the one key outside any queue's slot)
"""

from __future__ import annotations

import asyncio
import itertools
import math
import os
import time
from collections.abc import Awaitable, Iterable, Sequence
from dataclasses import replace
from importlib import resources
from itertools import chain
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

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
from asyncmq.backends.redis.lane import ScriptLane, lane_settings
from asyncmq.deduplication import Deduplicated, Deduplication
from asyncmq.dependencies import split_ref
from asyncmq.errors import ConfigurationError, MalformedJobError, UnknownParentError, UnsupportedError
from asyncmq.job import OUTCOME_FIELDS, Job, JobState, decode_flat, encode_flat, malformed_reason
from asyncmq.logging import get_logger
from asyncmq.schedule import Repeatable
from asyncmq.transitions import DEFAULT_RETENTION, OUTCOME_TOTALS, Retention, StallRecovery, Transition

try:
    from redis.asyncio import BlockingConnectionPool, Redis
    from redis.asyncio.cluster import RedisCluster
    from redis.backoff import ExponentialBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import ResponseError
    from redis.exceptions import TimeoutError as RedisTimeoutError
    from redis.retry import Retry
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ConfigurationError("the Redis backend needs its extra: pip install 'asyncmq[redis]'") from exc

if TYPE_CHECKING:
    from redis.commands.core import AsyncScript

__all__ = ["RedisBackend"]

#: redis-py types its commands as sync-or-async unions and its cluster client apart from
#: the plain one, so neither type checks usefully here.
Client = Any

log = get_logger(__name__)

_JSON_OUTCOME_FIELDS = frozenset({"result", "error", "progress"})
_OUTCOME_FIELDS_WIRE = orjson.dumps(OUTCOME_FIELDS).decode()
_OUTCOME_TOTALS_WIRE = orjson.dumps({state.value: name for state, name in OUTCOME_TOTALS.items()}).decode()
_FINISHED = ("completed", "failed", "expired", "cancelled")
_ENQUEUE_CHUNK = 1000
_MALFORMED = "has a malformed"  # what a script's refusal of a garbled job says
_REDIS_TICK_S = 0.1  # how late Redis may end a blocking wait: 1 / its default `hz` of 10
_SCRIPTS = (
    "enqueue", "claim", "fail", "finish", "release", "heartbeat", "progress", "promote",
    "recover", "transition", "remove", "drain", "purge", "repeatable", "watch", "dedup", "holder",
    "depend",
)  # fmt: skip
#: How long the pop that reads a process's ended jobs blocks before it checks anyone still waits.
_ENDED_POP_S = 5.0


def _load_scripts() -> dict[str, str]:
    folder = resources.files("asyncmq.backends.redis") / "lua"
    common = (folder / "common.lua").read_text()
    return {name: common + "\n" + (folder / f"{name}.lua").read_text() for name in _SCRIPTS}


def _pairs(flat: Sequence[str]) -> dict[str, str]:
    items = iter(flat)
    return dict(zip(items, items, strict=True))


def _decode(flat: Sequence[str]) -> Job | None:
    """A job from a script's HGETALL reply; `None` (logged) for a missing or corrupt record."""
    if not flat:
        return None
    fields = _pairs(flat)
    fields.pop("settled_token", None)  # the backend's own bookkeeping, not a job field
    try:
        return decode_flat(fields)
    except MalformedJobError:
        log.exception("skipping malformed job record %r", fields.get("id"))
        return None


def _read(queue: str, job_id: str, flat: Sequence[str]) -> Job | UnreadableJob:
    """The job stored under `job_id`, or, when its record makes none, what a worker needs
    to fail it."""
    fields = _pairs(flat)
    fields.pop("settled_token", None)
    try:
        job = decode_flat(fields)
    except MalformedJobError as exc:
        reason = str(exc)
    else:
        if job.id == job_id and job.queue == queue:
            return job
        wrong = "id" if job.id != job_id else "queue"
        reason = malformed_reason(f"job record {job_id!r}", wrong, fields[wrong])
    return UnreadableJob(job_id, queue, fields.get("token", ""), reason, fields.get("task", "?"))


def _failed_unreadable(job: UnreadableJob, flat: Sequence[str], now: float) -> Job | None:
    """For the `job:failed` event: a recovered job that recovery failed as unreadable (see
    recover.lua), or `None` (logged) for one it requeued, which its next claim fails."""
    fields = _pairs(flat)
    if fields.get("status") != JobState.FAILED.value:
        log.error("job %s of queue %r is back in line but cannot be read: %s", job.id, job.queue, job.reason)
        return None
    try:  # the reason as stored, which the event should repeat
        reason = str(orjson.loads(fields["error"])["message"])
    except (KeyError, TypeError, ValueError):
        reason = job.reason
    return replace(job, reason=reason).failed(now)


def _cascaded(records: Sequence[Sequence[str]]) -> list[Job]:
    """The jobs a script failed because a parent ended (`end_children` in common.lua)."""
    return [job for job in map(_decode, records) if job is not None]


def _whole_seconds(ttl_s: float) -> int:
    """EXPIRE takes whole seconds, at least one."""
    return max(math.ceil(ttl_s), 1)


def _filing(now: float, retention: Retention) -> tuple[str, int, int]:
    """The arguments `now, ttl, keep` by which a script files the jobs it ends or fails
    (`file_job` and `end_children` in common.lua)."""
    return repr(now), _whole_seconds(retention.ttl_s), retention.keep


def _enqueue_entry(job: Job) -> list[str]:
    when = job.delay_until if job.status is JobState.DELAYED else job.ready_at
    entry = [job.id, job.status.value, str(job.priority), repr(when)]
    entry += chain.from_iterable(encode_flat(job).items())
    return entry


def _outcome_entry(job: Job) -> list[str]:
    entry = [job.id, str(job.token), job.status.value]
    for name in OUTCOME_FIELDS:
        value = getattr(job, name)
        if value is None:
            entry.append("")
        elif name in _JSON_OUTCOME_FIELDS:
            entry.append(orjson.dumps(value).decode())
        else:
            entry.append(repr(value))
    return entry


class RedisBackend(BaseBackend):
    """Jobs in Redis (or a Redis Cluster), shared by every process that names the same server.

    `redis_url_or_client` takes a URL (`redis://`, `rediss://` for TLS, passwords in the URL)
    or a ready `redis.asyncio` client. `max_connections` should cover the worker's
    concurrency plus a few (each idle worker and scheduler holds one in a blocking pop).
    Connection errors are retried with exponential backoff.
    """

    name = "redis"
    supports_dependencies = True

    def __init__(
        self,
        redis_url_or_client: str | Redis | RedisCluster = "redis://localhost:6379/0",
        *,
        redis_url: str | None = None,
        prefix: str = "asyncmq",
        max_connections: int = 64,
        cluster: bool = False,
        retries: int = 10,
        events_maxlen: int = 10_000,
    ) -> None:
        super().__init__()
        target = redis_url if redis_url is not None else redis_url_or_client
        if isinstance(target, str) and "+cluster://" in target:
            target, cluster = target.replace("+cluster", "", 1), True
        self._url = _checked_url(target) if isinstance(target, str) else None
        self._client: Client | None = None if isinstance(target, str) else target
        self._owns_client = isinstance(target, str)
        self.prefix = prefix
        self.max_connections = max_connections
        self.cluster = cluster
        #: A script reaches one cluster slot, and each queue has its own.
        self.cross_queue_dependencies = not cluster
        self.retries = retries
        self.events_maxlen = events_maxlen
        self._scripts: dict[str, AsyncScript] = {}
        self._lane: ScriptLane | None = None
        self._claims = itertools.count()
        self._recoveries = itertools.count()
        self._client_id = os.urandom(8).hex()  # names this instance's recovery receipts
        self._known_queues: set[str] = set()
        #: `Queue.result` waiters of this process: queue -> job id -> watches.
        self._job_watches: dict[str, dict[str, set[EventWatch]]] = {}
        #: Per queue with waiters, the task popping the ids of ended jobs (`_follow_ended`).
        self._ended_readers: dict[str, asyncio.Task[None]] = {}

    def __repr__(self) -> str:
        where = redacted_url(self._url) if self._url else type(self._client).__name__
        return f"<RedisBackend {where} prefix={self.prefix!r}>"

    # -- connection -------------------------------------------------------------------
    def _build_client(self, url: str) -> Client:
        retry = Retry(ExponentialBackoff(cap=2.0, base=0.05), self.retries)
        errors: list[type[Exception]] = [RedisConnectionError, RedisTimeoutError, ConnectionResetError]
        if self.cluster:
            return RedisCluster.from_url(
                url, decode_responses=True, max_connections=self.max_connections, retry=retry
            )
        pool = BlockingConnectionPool.from_url(
            url,
            max_connections=self.max_connections,
            timeout=None,
            decode_responses=True,
            retry=retry,
            retry_on_error=errors,
            health_check_interval=30,
        )
        return Redis.from_pool(pool)  # owns the pool: closing the client closes it

    async def connect(self) -> None:
        self._open()

    def _open(self) -> Client:
        """Make the client (from the URL), its scripts and lane, if not made yet. Nothing here
        waits on the network (the driver connects on each connection's first command), so
        every call makes them by itself: a backend built from a URL works whichever call
        comes first, with or without `connect()`, and again after `close()`."""
        if self._client is None:
            assert self._url is not None
            self._client = self._build_client(self._url)
        if not self._scripts:
            for name, text in _load_scripts().items():
                self._scripts[name] = self._client.register_script(text)
        if self._lane is None and not self.cluster:
            pool = self._client.connection_pool
            settings = lane_settings(pool.connection_class.__name__, pool.connection_kwargs)
            if settings is not None:
                self._lane = ScriptLane(settings, self.max_connections, self.retries)
        return self._client

    def size_for(self, concurrency: int) -> None:
        # Slots, plus the worker's own: a claim, a flush, a heartbeat and two blocking waits.
        wanted = concurrency + 8
        if wanted > self.max_connections:
            self.max_connections = wanted
            if self._client is not None and self._owns_client and not self.cluster:
                self._client.connection_pool.max_connections = wanted
            if self._lane is not None:
                self._lane.max_connections = wanted

    async def close(self) -> None:
        readers = list(self._ended_readers.values())
        self._ended_readers.clear()
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        if self._lane is not None:
            await self._lane.close()
            self._lane = None
        if self._client is not None and self._owns_client:
            await self._client.aclose()
            self._client = None
        self._scripts.clear()

    @property
    def client(self) -> Client:
        """The driver's client, made on first use (see `_open`)."""
        if self._client is None or not self._scripts:
            return self._open()
        return self._client

    def _base(self, queue: str) -> str:
        return f"{self.prefix}:{{{queue}}}:"

    async def _run(self, script: str, queue: str, *args: Any) -> Any:
        if not self._scripts:
            self._open()
        started = time.perf_counter()
        code = self._scripts[script]
        if self._lane is not None and self._lane.has_room:
            (reply,) = await self._lane.call([(code.sha, code.script, self._base(queue), args)])
        else:
            reply = await code(keys=[self._base(queue)], args=args)
        self.record_operation(script, started)
        return reply

    async def _run_many(self, script: str, queue: str, calls: Iterable[list[Any]]) -> list[Any]:
        """Several calls of one script in one round trip: through the lane (which sends each
        as soon as `calls` yields it), a pipeline, or on a cluster (whose client refuses
        scripts in pipelines) concurrent calls to the queue's node."""
        keys = [self._base(queue)]
        started = time.perf_counter()
        if not self._scripts:
            self._open()
        code = self._scripts[script]
        if self._lane is not None and self._lane.has_room:
            replies = await self._lane.call((code.sha, code.script, keys[0], args) for args in calls)
        elif self.cluster:
            replies = list(await asyncio.gather(*(self._scripts[script](keys, args) for args in calls)))
        else:
            async with self.client.pipeline(transaction=False) as pipe:
                for args in calls:
                    await self._scripts[script](keys=keys, args=args, client=pipe)
                replies = await pipe.execute()
        self.record_operation(script, started)
        return replies

    async def _timed(self, operation: str, call: Awaitable[Any]) -> Any:
        started = time.perf_counter()
        reply = await call
        self.record_operation(operation, started)
        return reply

    async def _remember_queue(self, queue: str) -> None:
        if queue not in self._known_queues:
            await self._timed("remember_queue", self.client.sadd(f"{self.prefix}:queues", queue))
            self._known_queues.add(queue)

    # -- producing --------------------------------------------------------------------
    async def enqueue(self, jobs: Sequence[Job], *, connection: Any = None) -> list[bool]:
        self.refuse_connection(connection)
        if not jobs:
            return []
        if any(job.deps for job in jobs):
            return await self._enqueue_with_deps(jobs)
        if len(jobs) == 1:  # the common `await queue.add(...)`: skip the batching below
            job = jobs[0]
            await self._remember_queue(job.queue)
            return [bool((await self._run("enqueue", job.queue, orjson.dumps([_enqueue_entry(job)])))[0])]
        by_queue: dict[str, list[int]] = {}
        for index, job in enumerate(jobs):
            by_queue.setdefault(job.queue, []).append(index)
        stored = [False] * len(jobs)
        for queue, indexes in by_queue.items():
            await self._remember_queue(queue)
            chunks = [indexes[i : i + _ENQUEUE_CHUNK] for i in range(0, len(indexes), _ENQUEUE_CHUNK)]
            calls = ([orjson.dumps([_enqueue_entry(jobs[index]) for index in chunk])] for chunk in chunks)
            replies = await self._run_many("enqueue", queue, calls)
            for chunk, flags in zip(chunks, replies, strict=True):
                for index, flag in zip(chunk, flags, strict=True):
                    stored[index] = bool(flag)
        return stored

    async def _enqueue_with_deps(self, jobs: Sequence[Job]) -> list[bool]:
        """A call holding jobs with parents: one script (depend.lua) for all of it, so a missing
        parent stores nothing and a flow is never half stored."""
        queues = {job.queue for job in jobs}
        queues.update(split_ref(parent)[0] for job in jobs for parent in (job.deps or {}).get("parents", ()))
        if len(queues) > 1 and not self.cross_queue_dependencies:
            raise UnsupportedError(
                f"on a Redis Cluster, jobs that depend on each other must share one queue (this call "
                f"spans {sorted(queues)}): each queue lives in its own slot, which one atomic step "
                "cannot cross; keep the flow in one queue. Nothing was stored"
            )
        for queue in sorted(queues):
            await self._remember_queue(queue)
        entries = orjson.dumps([[job.queue, *_enqueue_entry(job)] for job in jobs])
        reply = await self._run("depend", jobs[0].queue, repr(time.time()), entries)
        if reply[0] == 0:
            child, queue, parent = reply[1:]
            raise UnknownParentError(
                f"job {child} depends on job {parent} of queue {queue!r}, which does not exist: "
                "nothing was stored"
            )
        self.failed_by_parents(_cascaded(reply[2]))
        return [bool(flag) for flag in reply[1]]

    # -- deduplication ----------------------------------------------------------------
    async def enqueue_deduplicated(
        self,
        job: Job,
        deduplication: Deduplication,
        now: float,
        *,
        connection: Any = None,
        retention: Retention = DEFAULT_RETENTION,
    ) -> Deduplicated:
        """One script (dedup.lua); a ttl runs on the server's clock (the key's own expiry)."""
        self.refuse_connection(connection)
        await self._remember_queue(job.queue)
        ttl_ms = "" if deduplication.ttl_s is None else str(max(math.ceil(deduplication.ttl_s * 1000), 1))
        flags = (int(deduplication.extend), int(deduplication.replace))
        entry = orjson.dumps(_enqueue_entry(job))
        filing = _filing(now, retention)
        reply = await self._run("dedup", job.queue, deduplication.id, ttl_ms, *flags, entry, *filing)
        if len(reply) > 3:
            self.failed_by_parents(_cascaded(reply[3]))
        return Deduplicated(reply[0] == 1, reply[1] if len(reply) > 1 else None, (reply[2:3] or [None])[0])

    async def deduplication_holder(self, queue: str, deduplication_id: str, now: float) -> str | None:
        holder: str | None = await self._run("holder", queue, deduplication_id)
        return holder

    async def remove_deduplication_key(self, queue: str, deduplication_id: str) -> bool:
        key = self._base(queue) + "dedup:" + deduplication_id
        return bool(await self._timed("remove_deduplication_key", self.client.delete(key)))

    # -- consuming --------------------------------------------------------------------
    async def claim(
        self, queue: str, worker_id: str, limit: int, lease_s: float, now: float, rate: RateLimit | None
    ) -> ClaimResult:
        rate_args = (rate.limit, rate.interval_s) if rate is not None else (0, 1)
        claim_id = f"{worker_id}:{next(self._claims)}"  # the same on a resend: see claim.lua
        reply = await self._run(
            "claim", queue, repr(now), limit, repr(now + lease_s), worker_id, *rate_args, claim_id
        )
        if reply[0] == -1:
            return ClaimResult([], float(reply[1]))
        if len(reply) == 1:
            return ClaimResult([])
        for job_id in reply[1]:
            log.error("job %s of queue %r lost its record while waiting; dropped", job_id, queue)
        result = ClaimResult([])
        for i in range(2, len(reply), 2):
            found = _read(queue, reply[i], reply[i + 1])
            if isinstance(found, Job):
                result.jobs.append(found)
            else:
                result.unreadable.append(found)
        return result

    async def fail_unreadable(
        self, jobs: Sequence[UnreadableJob], now: float, retention: Retention
    ) -> list[bool]:
        failed = [False] * len(jobs)
        filing = _filing(now, retention)
        for queue in {job.queue for job in jobs}:
            indexes = [index for index, job in enumerate(jobs) if job.queue == queue]
            triples = chain.from_iterable((jobs[i].id, jobs[i].token, jobs[i].reason) for i in indexes)
            flags, cascaded = await self._run("fail", queue, *filing, *triples)
            for index, flag in zip(indexes, flags, strict=True):
                failed[index] = bool(flag)
            self.failed_by_parents(_cascaded(cascaded))
        return failed

    async def wait_for_jobs(self, queue: str, timeout_s: float) -> None:
        await self._blocking_pop(self._base(queue) + "notify", timeout_s)

    async def _blocking_pop(self, key: str, timeout_s: float) -> bool:
        """Wait for a marker on `key`; False when the wait timed out."""
        if timeout_s <= 0:
            return False
        popped = await self._timed("wait", self.client.blpop([key], timeout=max(round(timeout_s, 3), 0.001)))
        return popped is not None

    async def finish(self, jobs: Sequence[Job], retention: Retention) -> list[bool]:
        if not jobs:
            return []
        by_queue: dict[str, list[int]] = {}
        for index, job in enumerate(jobs):
            by_queue.setdefault(job.queue, []).append(index)
        accepted = [False] * len(jobs)
        for queue, indexes in by_queue.items():
            outcomes = orjson.dumps([_outcome_entry(jobs[index]) for index in indexes])
            flags, cascaded = await self._run(
                "finish",
                queue,
                *_filing(time.time(), retention),
                outcomes,
                _OUTCOME_FIELDS_WIRE,
                _OUTCOME_TOTALS_WIRE,
            )
            for index, flag in zip(indexes, flags, strict=True):
                accepted[index] = bool(flag)
            if cascaded:
                self.failed_by_parents(_cascaded(cascaded))
        return accepted

    async def release(self, jobs: Sequence[Job], transition: Transition, now: float) -> None:
        for queue in {job.queue for job in jobs}:
            pairs = chain.from_iterable((job.id, job.token) for job in jobs if job.queue == queue)
            self.failed_by_parents(
                _cascaded(await self._run("release", queue, transition.wire, repr(now), *pairs))
            )

    async def heartbeat(self, worker: WorkerInfo, jobs: Sequence[Job], lease_until: float) -> list[str]:
        await self._remember_queue(worker.queue)
        info = orjson.dumps(
            {name: getattr(worker, name) for name in WorkerInfo.__dataclass_fields__}
        ).decode()
        pairs = chain.from_iterable((job.id, job.token) for job in jobs)
        now = worker.heartbeat_at
        lost: list[str] = await self._run(
            "heartbeat",
            worker.queue,
            repr(now),
            worker.id,
            repr(worker.expires_at),
            info,
            repr(lease_until),
            *pairs,
        )
        return lost

    async def remove_worker(self, worker: WorkerInfo) -> None:
        base = self._base(worker.queue)
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.zrem(base + "workers", worker.id)
            pipe.hdel(base + "workers:info", worker.id)
            await self._timed("remove_worker", pipe.execute())

    async def save_progress(self, job: Job) -> bool:
        return bool(
            await self._run("progress", job.queue, job.id, job.token, orjson.dumps(job.progress).decode())
        )

    # -- scheduling -------------------------------------------------------------------
    async def promote_due(self, queue: str, now: float, limit: int) -> tuple[int, float | None]:
        promoted, following = await self._run("promote", queue, repr(now), limit)
        return int(promoted), (float(following) if following else None)

    async def wait_for_schedule(self, queue: str, timeout_s: float) -> None:
        """Redis ends a blocking wait on its own clock tick (`hz`, ten a second by default), up
        to 100 ms after the timeout: a delayed job would start that late. So the wait ends one
        tick early and the rest is slept here, on the event loop's precise clock; a marker
        (a sooner job added) still ends it at once, unless it comes in that last tick."""
        deadline = time.monotonic() + timeout_s
        if await self._blocking_pop(self._base(queue) + "schedule", timeout_s - _REDIS_TICK_S):
            return
        await asyncio.sleep(max(deadline - time.monotonic(), 0))

    async def recover_stalled(self, queue: str, now: float, recovery: StallRecovery) -> list[Job]:
        recovery_id = f"{self._client_id}:{next(self._recoveries)}"  # the same on a resend
        replies = await self._run(
            "recover",
            queue,
            recovery.requeue.wire,
            recovery.fail.wire,
            recovery.max_stalls,
            repr(now),
            1000,
            _whole_seconds(recovery.retention.ttl_s),
            recovery.retention.keep,
            recovery_id,
        )
        for job_id in replies[0]:
            log.error("active job %s of queue %r lost its record; dropped", job_id, queue)
        self.failed_by_parents(_cascaded(replies[1]))
        recovered = []
        for i in range(2, len(replies), 2):
            found = _read(queue, replies[i], replies[i + 1])
            if isinstance(found, Job):
                recovered.append(found)
            elif (failed := _failed_unreadable(found, replies[i + 1], now)) is not None:
                recovered.append(failed)
        return recovered

    async def add_repeatable(self, repeatable: Repeatable) -> bool:
        await self._remember_queue(repeatable.queue)
        record = orjson.dumps(repeatable.to_record()).decode()
        added = await self._run(
            "repeatable", repeatable.queue, "add", repeatable.key, record, repr(repeatable.next_run_at)
        )
        return bool(added)

    async def remove_repeatable(self, queue: str, key: str) -> bool:
        base = self._base(queue)
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.hdel(base + "repeat", key)
            pipe.hdel(base + "repeat:next", key)
            removed, _ = await self._timed("remove_repeatable", pipe.execute())
        return bool(removed)

    async def stored_repeatables(self, queue: str) -> list[tuple[str, object]]:
        base = self._base(queue)
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.hgetall(base + "repeat")
            pipe.hgetall(base + "repeat:next")
            records, next_at = await self._timed("repeatables", pipe.execute())
        return [(key, schedule_record(raw, next_at.get(key))) for key, raw in records.items()]

    async def advance_repeatable(self, queue: str, key: str, expected_at: float, next_at: float) -> bool:
        return bool(await self._run("repeatable", queue, "advance", key, repr(expected_at), repr(next_at)))

    # -- control and inspection -------------------------------------------------------
    async def set_paused(self, queue: str, paused: bool) -> None:
        await self._remember_queue(queue)
        base = self._base(queue)
        if paused:
            await self._timed("pause", self.client.hset(base + "meta", "paused", "1"))
            return
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.hdel(base + "meta", "paused")
            pipe.lpush(base + "notify", "1")
            pipe.ltrim(base + "notify", 0, 0)
            await self._timed("resume", pipe.execute())

    async def transition(
        self, queue: str, job_id: str, transition: Transition, now: float, retention: Retention
    ) -> Job | None:
        try:
            reply = await self._run("transition", queue, transition.wire, job_id, *_filing(now, retention))
        except ResponseError as exc:  # transition.lua refuses a garbled job before any write
            if _MALFORMED not in str(exc):
                raise
            raise MalformedJobError(str(exc).split(" script:", 1)[0]) from None
        self.failed_by_parents(_cascaded(reply[1]))
        return _decode(reply[0])

    async def get_job(self, queue: str, job_id: str) -> Job | None:
        fields = await self._timed("get_job", self.client.hgetall(self._base(queue) + "job:" + job_id))
        if not fields:
            return None
        found = _read(queue, job_id, list(chain.from_iterable(fields.items())))
        if isinstance(found, UnreadableJob):
            raise MalformedJobError(found.reason)
        return found

    async def list_jobs(self, queue: str, state: JobState, limit: int, offset: int = 0) -> list[Job]:
        base = self._base(queue)
        index = base + state.value
        if state.value in _FINISHED:  # newest first
            ids = await self._timed("list_ids", self.client.zrevrange(index, offset, offset + limit - 1))
        else:
            ids = await self._timed("list_ids", self.client.zrange(index, offset, offset + limit - 1))
        async with self.client.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.hgetall(base + "job:" + job_id)
            replies = await self._timed("list_jobs", pipe.execute())
        jobs = (_decode(list(chain.from_iterable(fields.items()))) for fields in replies)
        return [job for job in jobs if job is not None]

    async def remove_job(self, queue: str, job_id: str, retention: Retention = DEFAULT_RETENTION) -> bool:
        reply = await self._run("remove", queue, job_id, *_filing(time.time(), retention))
        if reply[0] == 1:
            self.failed_by_parents(_cascaded(reply[1]))
        return bool(reply[0])

    async def drain(
        self, queue: str, include_delayed: bool = False, retention: Retention = DEFAULT_RETENTION
    ) -> int:
        reply = await self._run("drain", queue, int(include_delayed), *_filing(time.time(), retention))
        self.failed_by_parents(_cascaded(reply[1]))
        return int(reply[0])

    async def purge_finished(self, queue: str, now: float, retention: Retention) -> int:
        # Scores are when records expire, whole seconds after finishing (`_whole_seconds`):
        # a job finished more than `ttl_s` ago is scored below this.
        cutoff = now - retention.ttl_s + _whole_seconds(retention.ttl_s)
        return int(await self._run("purge", queue, repr(cutoff), retention.keep))

    async def delete_queue(self, queue: str) -> None:
        keys = [key async for key in self.client.scan_iter(match=self._base(queue) + "*", count=1000)]
        for key in keys:  # one by one: a cluster client refuses a multi-key DEL across slots
            await self.client.delete(key)
        await self._timed("delete_queue", self.client.srem(f"{self.prefix}:queues", queue))
        self._known_queues.discard(queue)

    async def stats(self, queue: str, now: float) -> QueueStats:
        base = self._base(queue)
        states = [state.value for state in JobState]
        async with self.client.pipeline(transaction=False) as pipe:
            for state in states:
                if state in _FINISHED:  # scored by the end of retention: what is still stored
                    pipe.zcount(base + state, f"({now!r}", "+inf")
                else:
                    pipe.zcard(base + state)
            pipe.hexists(base + "meta", "paused")
            pipe.zrange(base + "since", 0, 0, withscores=True)
            pipe.zrangebyscore(base + "workers", repr(now), "+inf")
            pipe.hgetall(base + "workers:info")
            pipe.hgetall(base + "totals")
            replies = await self._timed("stats", pipe.execute())
        counts = dict(zip(states, replies[: len(states)], strict=True))
        paused, oldest, live, infos, stored_totals = replies[len(states) :]
        workers, unreadable = read_workers((wid, infos[wid]) for wid in live if wid in infos)
        totals: dict[str, dict[str, int]] = {}
        for field, count in stored_totals.items():
            total, _, task = field.partition(":")  # total names hold no ':', task names may
            totals.setdefault(task, {})[total] = int(count)
        oldest_at = oldest[0][1] if oldest else None
        return QueueStats(counts, oldest_at, bool(paused), workers, unreadable, totals)

    async def publish_events(self, events: Sequence[tuple[str, dict[str, Any]]]) -> None:
        async with self.client.pipeline(transaction=False) as pipe:
            for name, payload in events:
                fields = {"event": name, "payload": orjson.dumps(payload, default=str)}
                pipe.xadd(
                    self._base(payload["queue"]) + "events",
                    fields,
                    maxlen=self.events_maxlen,
                    approximate=True,
                )
            await self._timed("publish_events", pipe.execute())

    async def read_events(
        self, queue: str, after: str, block_s: float
    ) -> list[tuple[str, str, dict[str, Any]]]:
        stream = self._base(queue) + "events"
        block_ms = max(int(block_s * 1000), 1)
        reply = await self._timed(
            "read_events", self.client.xread({stream: after}, count=1000, block=block_ms)
        )
        return [
            (entry_id, fields["event"], orjson.loads(fields["payload"]))
            for _, entries in reply or []
            for entry_id, fields in entries
        ]

    async def queues(self) -> list[str]:
        return sorted(await self._timed("queues", self.client.smembers(f"{self.prefix}:queues")))

    # -- results ----------------------------------------------------------------------
    async def watch_job(self, queue: str, job_id: str) -> JobWatch:
        """Registered with the job (one registration per process and job), the scripts that
        end it push its id to this process's list, which one pop per queue reads: a waiter
        costs no connection of its own, and a finish while nobody waits one key lookup."""
        by_id = self._job_watches.setdefault(queue, {})
        watches = by_id.get(job_id)
        first = watches is None
        if watches is None:
            watches = by_id[job_id] = set()
        watch = EventWatch(lambda ended: self._unwatch(queue, job_id, ended))
        watches.add(watch)
        if first:
            try:
                await self._run("watch", queue, "add", job_id, self._client_id)
            except BaseException:
                await watch.close()
                raise
        reader = self._ended_readers.get(queue)
        if reader is None or reader.done():
            self._ended_readers[queue] = asyncio.get_running_loop().create_task(self._follow_ended(queue))
        return watch

    async def _unwatch(self, queue: str, job_id: str, watch: EventWatch) -> None:
        by_id = self._job_watches.get(queue, {})
        watches = by_id.get(job_id)
        if watches is None:
            return
        watches.discard(watch)
        if watches:
            return
        del by_id[job_id]
        if not by_id:
            del self._job_watches[queue]
        try:
            await self._run("watch", queue, "remove", job_id, self._client_id)
        except Exception as exc:  # it expires; a finish meanwhile only pushes an id nobody reads
            log.warning("could not unregister the wait for job %s of queue %r: %s", job_id, queue, exc)

    async def _follow_ended(self, queue: str) -> None:
        """Pop the ids of this process's ended jobs of `queue` and wake their waiters, while
        any waits. A failed pop wakes them all (they read their jobs again) and is retried."""
        key = self._base(queue) + "ended:" + self._client_id
        failures = 0
        while self._job_watches.get(queue):
            try:
                popped = await self._timed("wait_ended", self.client.blpop([key], timeout=_ENDED_POP_S))
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                log.warning("waiting for ended jobs of queue %r failed (%s); retrying", queue, exc)
                popped, failures = None, failures + 1
                for watches in self._job_watches.get(queue, {}).values():
                    for watch in watches:
                        watch.event.set()
                await asyncio.sleep(min(0.05 * 2**failures, 2.0))
                continue
            failures = 0
            if popped is not None:
                for watch in self._job_watches.get(queue, {}).get(popped[1], ()):
                    watch.event.set()


def _checked_url(url: str) -> str:
    """Refuse a URL the driver would misread without a word: a password holding a '/', '?'
    or '#' (it would take the rest for the host and path), or a database part that is not a
    number (`/abc`, `?db=abc`: it would use database 0, the wrong data). Only the masked
    URL, as a person meant it, is quoted."""
    meant = urlsplit(redacted_url(url))
    read = urlsplit(url)
    shown = redacted_url(url)
    if (read.netloc.rpartition("@")[2], read.path) != (meant.netloc.rpartition("@")[2], meant.path):
        raise ConfigurationError(
            f"Redis URL {shown!r}: the password holds a '/', '?' or '#', which ends it early: "
            "write them as %2F, %3F and %23"
        )
    given = [] if meant.scheme == "unix" else [meant.path.strip("/")]  # a unix path is the socket
    given += parse_qs(meant.query).get("db", [])
    for database in given:
        if database and not database.isdigit():
            raise ConfigurationError(
                f"Redis URL {shown!r}: the database part {database!r} is not a number: "
                "end the URL with the database number, /0 for the first"
            )
    return url


def redis_backend_from_url(url: str) -> RedisBackend:
    """`redis://`, `rediss://` (TLS), `unix://`, and `redis+cluster://` for a Redis Cluster."""
    return RedisBackend(url)
