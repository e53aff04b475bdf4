"""The PostgreSQL backend: jobs in one table, claimed and finished in batches, woken by NOTIFY.

Every operation is one statement (or one function call) on a pooled asyncpg connection, so
asyncpg prepares it once per connection and reuses it. Claims take up to `limit` rows with
`FOR UPDATE SKIP LOCKED`, so any number of workers share a queue without waiting on each
other; a batch of outcomes is one `UPDATE ... FROM unnest(...)`, a bulk enqueue one
`INSERT ... SELECT FROM unnest(...)`. The schema is in `asyncmq.backends.postgres.schema`.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import itertools
import os
import time
from collections.abc import Sequence
from functools import cache
from typing import Any

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
from asyncmq.backends.postgres import schema as pg_schema
from asyncmq.backends.postgres.listener import Listener
from asyncmq.deduplication import Deduplicated, Deduplication
from asyncmq.dependencies import add_child, parent_ended, ref, split_ref
from asyncmq.errors import ConfigurationError, MalformedJobError, UnknownParentError
from asyncmq.job import FIELD_KINDS, OUTCOME_FIELDS, TERMINAL_STATES, Job, JobState
from asyncmq.logging import get_logger
from asyncmq.schedule import Repeatable
from asyncmq.transitions import DEFAULT_RETENTION, OUTCOME_TOTALS, Retention, StallRecovery, Transition

try:
    import asyncpg
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ConfigurationError(
        "the PostgreSQL backend needs its extra: pip install 'asyncmq[postgres]'"
    ) from exc

__all__ = ["PostgresBackend"]


class _IdTaken(Exception):
    """Rolls back a deduplicated enqueue whose job id was taken after its check."""


log = get_logger(__name__)

#: The job's columns in `Job` field order (the table adds `seq` and `settled_token`), and
#: their SQL types by the field's kind (`token` counts past 2^31: bigint).
_JOB_COLUMNS = tuple(FIELD_KINDS)
_SQL_TYPES = {"str": "text", "int": "integer", "float": "double precision", "json": "jsonb"}
_COLUMN_TYPES = {name: _SQL_TYPES[kind] for name, kind in FIELD_KINDS.items()} | {"token": "bigint"}
#: What an enqueue writes; the rest start at their column defaults.
_ENQUEUE_COLUMNS = (
    "queue", "id", "task", "status", "priority", "args", "kwargs", "max_retries", "backoff", "ttl_s",
    "timeout_s", "created_at", "delay_until", "ready_at", "repeat_key", "meta",
)  # fmt: skip
_FINISHED = tuple(state.value for state in TERMINAL_STATES)
#: Said in every statement that looks finished jobs up by a status it is given: a prepared
#: statement's generic plan can use the partial index `jobs_finished` only when its
#: predicate is written out (a `status = $2` alone does not imply it).
_FINISHED_SQL = "(" + ", ".join(f"'{state}'" for state in _FINISHED) + ")"
_PURGE_BATCH = 5000
#: What asyncpg raises for a connection found closed or broken before a statement is sent.
_UNSENT = (asyncpg.InterfaceError, asyncpg.exceptions.InternalClientError)
_RECOVER_BATCH = 1000
#: The total an outcome adds to, from the status it stores (`OUTCOME_TOTALS`), in SQL.
_OUTCOME_TOTAL_SQL = (
    "CASE status " + " ".join(f"WHEN '{s.value}' THEN '{t}'" for s, t in OUTCOME_TOTALS.items()) + " END"
)


def _count_sql(moved: str, totals: str | Sequence[str]) -> str:
    """A statement (for a CTE) adding each row of `moved` (its columns `queue` and `task`) to
    `totals`: names, or one SQL expression of its columns. Rows are grouped, and the sums
    upserted in key order, so that two statements sharing a shard never deadlock; and every
    statement adds to `totals` before `counts` (the jobs trigger's, run after the statement)."""
    if isinstance(totals, str):
        names, total = "", totals
    elif len(totals) == 1:
        names, total = "", f"'{totals[0]}'"
    else:
        names = " CROSS JOIN (VALUES " + ", ".join(f"('{name}')" for name in totals) + ") AS names(total)"
        total = "names.total"
    return f"""
        INSERT INTO {{s}}.totals AS t (queue, task, total, shard, n)
        SELECT queue, task, {total}, pg_backend_pid() % 16, count(*) FROM {moved}{names}
        GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
        ON CONFLICT (queue, task, total, shard) DO UPDATE SET n = t.n + EXCLUDED.n
        RETURNING 1"""


def _job_or_reason(record: Any) -> Job | str:
    """A job from a row, or why the row makes none."""
    try:
        return Job.from_record({name: record[name] for name in _JOB_COLUMNS}, typed_scalars=True)
    except (MalformedJobError, KeyError, TypeError) as exc:
        return str(exc)


def _job(record: Any) -> Job | None:
    """A job from a row; `None` (logged) for a row that does not make a valid job."""
    found = _job_or_reason(record)
    if isinstance(found, str):
        log.error("skipping malformed job row %r: %s", record.get("id") if record else None, found)
        return None
    return found


def _jobs(records: Sequence[Any]) -> list[Job]:
    return [job for record in records if (job := _job(record)) is not None]


def _apart(rows: Sequence[Any], own: str = "queue") -> tuple[list[Any], list[Job]]:
    """A statement's own rows, and the children its `freed` CTE failed (`_freed_sql`,
    `_removed_sql`): the rows whose column `own` is NULL, their job in `failed`."""
    return [row for row in rows if row[own] is not None], _jobs(
        [row["failed"] for row in rows if row[own] is None]
    )


def _placeholders(columns: Sequence[str], *, array: bool = True) -> str:
    """Typed parameters for `columns`, arrays for unnest() by default. JSON goes as text
    (encoded here), so any connection can send it, a caller's own included."""
    suffix = "[]" if array else ""
    return ", ".join(
        f"${i + 1}::text{suffix}::jsonb{suffix}"
        if _COLUMN_TYPES[name] == "jsonb"
        else f"${i + 1}::{_COLUMN_TYPES[name]}{suffix}"
        for i, name in enumerate(columns)
    )


def _enqueue_sql(rows: str, deps: bool = False) -> str:
    """Store `rows` (their columns `_ENQUEUE_COLUMNS`) and, in the same statement, count them
    (by state, and in their task's `enqueued` total) and wake the queues' workers (schedulers,
    for delayed ones). A trigger would do the same for every insert but cost a single job
    ~45 us more (its call and transition table). With `deps`, rows also have the columns
    `deps`, `error` and `finished_at` (children failed at their add: counted `failed` too)."""
    columns = (*_ENQUEUE_COLUMNS, "deps", "error", "finished_at") if deps else _ENQUEUE_COLUMNS
    moved = (
        "(SELECT queue, task, 'enqueued' AS total FROM added UNION ALL "
        "SELECT queue, task, 'failed' FROM added WHERE status = 'failed') AS moved"
    )
    totaled = _count_sql(moved, "total") if deps else _count_sql("added", ("enqueued",))
    return f"""
        WITH added AS (
            INSERT INTO {{s}}.jobs ({", ".join(columns)}) {rows}
            ON CONFLICT (queue, id) DO NOTHING RETURNING queue, id, status, task
        ), totaled AS ({totaled}
        ), counted AS (  -- after `totaled` (its count read first), as in every statement
            INSERT INTO {{s}}.counts AS c (queue, status, shard, n)
            SELECT queue, status, pg_backend_pid() % 16, count(*) FROM added
            WHERE (SELECT count(*) FROM totaled) > 0
            GROUP BY 1, 2 ORDER BY 1, 2
            ON CONFLICT (queue, status, shard) DO UPDATE SET n = c.n + EXCLUDED.n
        )
        SELECT queue, id FROM added
        UNION ALL  -- a row per woken queue, no job: (NULL, '')
        SELECT NULL, pg_notify('{{channel}}', kind || queue)::text FROM (
            SELECT DISTINCT CASE status WHEN 'waiting' THEN 'w:' ELSE 'd:' END AS kind, queue
            FROM added WHERE status IN ('waiting', 'delayed')
        ) AS woken
    """


def _woken_sql(ended: str) -> str:
    """A CTE `woken` (one row) that has `wake_result_waiters` notify `r:<queue>/<id>` for each
    job of `ended` (its columns `queue`, `id` and `status`) that ended and that a
    `Queue.result` waits for (`result_waits`). While nobody waits, that is one probe of an
    empty table, planned once per session. The statement must read `woken` to run it."""
    return f""", woken AS (
                SELECT {{s}}.wake_result_waiters(array_agg(e.queue), array_agg(e.id)) AS n
                FROM {ended} AS e WHERE e.status IN {_FINISHED_SQL}
            )"""


def _freed_sql(ended: str, after: str = "") -> str:
    """A CTE `freed` applying the end of each job of `ended` (its columns `queue`, `id`,
    `status`, `result`, `finished_at`, `deps`) that has children to them (`parents_ended`, see
    the schema's version 6), after the CTE `after` (the statement's totals) ran; its rows
    (`job`) are the children it failed. A job without children costs a look at its `deps`.
    The statement must read `freed` to run it."""
    first = f" AND (SELECT count(*) FROM {after}) >= 0" if after else ""
    return f""", freed AS (
                SELECT {{s}}.parents_ended(jsonb_agg(jsonb_build_object(
                    'queue', e.queue, 'id', e.id, 'status', e.status, 'result', e.result,
                    'children', e.deps -> 'children'
                )), coalesce(max(e.finished_at), extract(epoch FROM clock_timestamp()))) AS job
                FROM {ended} AS e WHERE e.deps ? 'children' AND e.status IN {_FINISHED_SQL}{first}
                HAVING count(*) > 0
            )"""


def _removed_sql(gone: str) -> str:
    """A CTE `freed` telling the blocked children of each job of `gone` (its columns `queue`,
    `id`, `was`, its status before, and `deps`) that had not ended that it was removed
    (`parents_ended` with the status 'removed', see the schema's version 8), at $3; its rows
    (`job`) are the children it failed. The statement must read `freed` to run it."""
    return f""", freed AS (
                SELECT {{s}}.parents_ended(jsonb_agg(jsonb_build_object(
                    'queue', e.queue, 'id', e.id, 'status', 'removed', 'children', e.deps -> 'children'
                )), $3) AS job
                FROM {gone} AS e WHERE e.deps ? 'children' AND e.was NOT IN {_FINISHED_SQL}
                HAVING count(*) > 0
            )"""


def _stand_in(reference: str, row: Any, child: Job) -> Job:
    """A stored parent as `parent_ended` reads it (its reference, status and result); one
    that does not exist is `UnknownParentError`, one whose status is unreadable pending."""
    queue, job_id = split_ref(reference)
    if row is None:
        raise UnknownParentError(
            f"job {child.id} depends on job {job_id} of queue {queue!r}, which does not exist: "
            "nothing was stored"
        )
    status = JobState(row["status"]) if row["status"] in JobState.__members__.values() else JobState.ACTIVE
    return dataclasses.replace(
        child,
        queue=queue,
        id=job_id,
        status=status,
        result=None if row["result"] is None else orjson.loads(row["result"]),
        deps=None,
    )


def _column(jobs: Sequence[Job], name: str) -> list[Any]:
    if name == "status":
        return [job.status.value for job in jobs]
    if _COLUMN_TYPES[name] == "jsonb":
        return [None if (v := getattr(job, name)) is None else orjson.dumps(v).decode() for job in jobs]
    return [getattr(job, name) for job in jobs]


@cache
def _set_clause(transition: Transition, first: int, now_given: bool) -> str:
    """The SET list that applies `transition`. Its parameters start at $first: the moment
    (when the transition stamps one, or `now_given`: the statement uses it anyway), then the
    assigned values in order (`_set_args`)."""
    takes_now = now_given or bool(transition.stamp)
    parts = [f"status = '{transition.target.value}'", "token = j.token + 1"]
    parts += [f"{name} = j.{name} + ({int(delta)})" for name, delta in transition.add.items()]
    parts += [f"{name} = NULL" for name in transition.clear]
    parts += [f"{name} = ${first}" for name in transition.stamp]
    after = first + 1 if takes_now else first
    parts += [f"{name} = ${after + i}::{_COLUMN_TYPES[name]}" for i, name in enumerate(transition.assign)]
    if transition.target is JobState.WAITING:
        parts.append("seq = nextval('{s}.jobs_seq')")  # back in line: at its end
    return ", ".join(parts)


def _set_args(transition: Transition, now: float, now_given: bool) -> list[Any]:
    head = [now] if now_given or transition.stamp else []
    return head + list(transition.assign.values())


def _counted(transition: Transition) -> str:
    """The CTE that adds the jobs of `done` to the totals `transition` names (none: nothing)."""
    return f", counted AS ({_count_sql('done', transition.totals)}\n)" if transition.totals else ""


def _after(transition: Transition) -> str:
    """The CTE holding the statement's totals (`_counted`), which `freed` runs after."""
    return "counted" if transition.totals else ""


def _sources(transition: Transition) -> str:
    return ", ".join(f"'{state.value}'" for state in sorted(transition.sources))


async def _init_connection(conn: asyncpg.Connection) -> None:
    """JSON columns as Python values, by orjson, in the binary format (a version byte, then
    the text): composite rows (the claim function's) can only be decoded in binary."""
    await conn.set_type_codec(
        "jsonb",
        encoder=lambda value: b"\x01" + orjson.dumps(value),
        decoder=lambda data: orjson.loads(data[1:]),
        schema="pg_catalog",
        format="binary",
    )


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Hand a connection back to the pool as it is. asyncpg's default reset (`RESET ALL`,
    `UNLISTEN *`, ...) is a round trip on every release, doubling each statement's cost; this
    backend's statements leave no session state behind (they set nothing, listen elsewhere,
    and take only transaction-scoped locks)."""


class PostgresBackend(BaseBackend):
    """Jobs in PostgreSQL, shared by every process that names the same database and schema.

    `dsn_or_pool` takes a URL (`postgresql://user@host:5432/db`) or a ready asyncpg pool whose
    connections decode `jsonb` as JSON (see `init_connection`). `max_connections` grows to a
    worker's concurrency plus a few (`size_for`). With `migrate` (the default) a missing or
    older schema is brought up to date on connect; without it the backend refuses to run and
    names the command that does (`asyncmq db migrate`). `prepared_statements=False` is for
    poolers that cannot keep them (PgBouncer in transaction mode). Every `vacuum_every`
    outcomes the backend vacuums its jobs table (`None`: leave it to autovacuum).
    """

    name = "postgres"
    supports_dependencies = True
    init_connection = staticmethod(_init_connection)

    def __init__(
        self,
        dsn_or_pool: str | asyncpg.Pool = "postgresql://localhost:5432/postgres",
        *,
        schema: str = "asyncmq",
        max_connections: int = 20,
        migrate: bool = True,
        prepared_statements: bool = True,
        events_keep: int = 10_000,
        vacuum_every: int | None = 50_000,
    ) -> None:
        super().__init__()
        self.schema = pg_schema.schema_name(schema)
        self._dsn = dsn_or_pool if isinstance(dsn_or_pool, str) else None
        self._pool: asyncpg.Pool | None = None if isinstance(dsn_or_pool, str) else dsn_or_pool
        self._owns_pool = isinstance(dsn_or_pool, str)
        self.max_connections = max_connections
        self.migrate = migrate
        self.prepared_statements = prepared_statements
        self.events_keep = events_keep
        self.vacuum_every = vacuum_every
        self._settled_since_vacuum = 0
        self._vacuuming: asyncio.Task[None] | None = None
        self._connected = False
        self._held: Any = None  # a pool connection kept checked out (`_fetch_held`)
        self._held_lock = asyncio.Lock()
        self._listener: Listener | None = None
        self._connect_lock = asyncio.Lock()
        self._known_queues: set[str] = set()
        self._sql: dict[str, str] = {}
        self._claims = itertools.count()
        #: Names this instance's `Queue.result` waits in `result_waits`.
        self._waiter_id = os.urandom(8).hex()
        #: This process's waits by job (`(queue, id)`): registered once however many wait.
        self._job_watches: dict[tuple[str, str], set[EventWatch]] = {}

    def __repr__(self) -> str:
        where = redacted_url(self._dsn) if self._dsn else type(self._pool).__name__
        return f"<PostgresBackend {where} schema={self.schema!r}>"

    # -- connection -------------------------------------------------------------------
    def size_for(self, concurrency: int) -> None:
        # Slots (each may report progress), plus a claim, a flush, a heartbeat and the scheduler.
        self.max_connections = max(self.max_connections, concurrency + 6)

    async def connect(self) -> None:
        if self._connected:
            return
        async with self._connect_lock:
            if self._connected:
                return
            if self._pool is None:
                self._pool = await self.open_pool()
            async with self._pool.acquire() as conn:
                await self._check_schema(conn)
            self._connected = True

    async def _wait(self, key: str, timeout_s: float) -> None:
        """Until `key` is notified, or `timeout_s`. The LISTEN connection opens at the first
        wait, so a process that only adds jobs never receives their wake-ups."""
        await (await self._listening()).wait(key, timeout_s)

    async def _listening(self) -> Listener:
        await self.connect()
        if self._listener is None:
            async with self._connect_lock:
                if self._listener is None:
                    listener = Listener(self._dsn, self.pool, pg_schema.channel(self.schema))
                    await listener.start()
                    self._listener = listener
        return self._listener

    async def open_pool(self) -> asyncpg.Pool:
        """A new pool on this backend's address (the backend's own, or a command's)."""
        if self._dsn is None:
            raise ConfigurationError(
                "this PostgresBackend was given a pool: it has no address to open another"
            )
        try:
            return await asyncpg.create_pool(
                self._dsn,
                min_size=1,
                max_size=self.max_connections,
                init=_init_connection,
                reset=_keep_session,
                statement_cache_size=100 if self.prepared_statements else 0,
            )
        except (OSError, asyncpg.PostgresError) as exc:
            raise ConfigurationError(
                f"cannot connect to PostgreSQL at {redacted_url(self._dsn)}: {exc}"
            ) from exc

    async def _check_schema(self, conn: asyncpg.Connection) -> None:
        version = await pg_schema.applied_version(conn, self.schema)
        pg_schema.check_known(version, self.schema)
        if version < pg_schema.LATEST:
            if not self.migrate:
                raise ConfigurationError(
                    f"the PostgreSQL schema {self.schema!r} is at version {version}, this asyncmq needs "
                    f"{pg_schema.LATEST}: run `asyncmq db migrate --backend URL`"
                )
            await pg_schema.migrate(conn, self.schema)

    async def close(self) -> None:
        if self._vacuuming is not None:
            self._vacuuming.cancel()
            await asyncio.gather(self._vacuuming, return_exceptions=True)
            self._vacuuming = None
        async with self._connect_lock:  # not while a wait opens the LISTEN connection
            self._connected = False
            if self._listener is not None:
                await self._listener.stop()
                self._listener = None
        await self._release_held()
        if self._pool is not None and self._owns_pool:
            await self._pool.close()
            self._pool = None

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise ConfigurationError("PostgresBackend is not connected: await backend.connect() first")
        return self._pool

    def sql(self, key: str, text: str) -> str:
        """`text` with the schema (and its wake-up channel) filled in, built once per statement."""
        found = self._sql.get(key)
        if found is None:
            found = text.replace("{s}", self.schema).replace("{channel}", pg_schema.channel(self.schema))
            self._sql[key] = found
        return found

    async def _fetch(self, operation: str, query: str, *args: Any, conn: Any = None) -> list[Any]:
        await self.connect()
        started = time.perf_counter()
        if conn is not None:
            rows = await conn.fetch(query, *args)
        elif self._held_lock.locked():
            rows = await self.pool.fetch(query, *args)
        else:
            async with self._held_lock:
                rows = await self._fetch_held(query, args)
        self.record_operation(operation, started)
        return list(rows)

    async def _fetch_held(self, query: str, args: Sequence[Any]) -> list[Any]:
        """On the connection this backend keeps checked out, for whichever call finds it free:
        the pool's checkout and return cost a lone statement a third of its client CPU. A
        connection an error may have left unusable goes back to the pool, which replaces it;
        one found dead before the statement was sent (killed while idle) costs nothing more
        than that: the statement runs on the new one."""
        for attempt in (1, 2):
            if self._held is None:
                self._held = await self.pool.acquire()
            held = self._held
            try:
                return list(await held.fetch(query, *args))
            except BaseException as exc:
                if isinstance(exc, asyncpg.PostgresError) and not held.is_closed():
                    raise  # the statement failed; its connection is fine
                self._held = None
                await self.pool.release(held)
                if attempt == 2 or not isinstance(exc, _UNSENT):
                    raise
        raise AssertionError("unreachable")

    async def _release_held(self) -> None:
        async with self._held_lock:
            held, self._held = self._held, None
            if held is not None and self._pool is not None:
                await self._pool.release(held)

    async def _remember_queue(self, queue: str) -> None:
        """Name the queue in `queues` (through the pool: a caller's transaction may roll back)."""
        if queue not in self._known_queues:
            query = self.sql("remember", "INSERT INTO {s}.queues (name) VALUES ($1) ON CONFLICT DO NOTHING")
            await self._fetch("remember_queue", query, queue)
            self._known_queues.add(queue)

    # -- producing --------------------------------------------------------------------
    async def enqueue(self, jobs: Sequence[Job], *, connection: Any = None) -> list[bool]:
        """Store jobs in one statement. With `connection` (the caller's asyncpg connection,
        in a transaction of theirs), the jobs exist, and wake workers, only once it commits."""
        if not jobs:
            return []
        for queue in {job.queue for job in jobs}:
            await self._remember_queue(queue)
        if any(job.deps for job in jobs):
            return await self._enqueue_children(jobs, connection)
        if len(jobs) == 1:  # the common call: plain values, cheaper than arrays both ends
            rows_sql = f"VALUES ({_placeholders(_ENQUEUE_COLUMNS, array=False)})"
            args = [column[0] for column in (_column(jobs, name) for name in _ENQUEUE_COLUMNS)]
        else:
            rows_sql = f"SELECT * FROM unnest({_placeholders(_ENQUEUE_COLUMNS)})"
            args = [_column(jobs, name) for name in _ENQUEUE_COLUMNS]
        query = self.sql(f"enqueue:{len(jobs) == 1}", _enqueue_sql(rows_sql))
        rows = await self._fetch("enqueue", query, *args, conn=connection)
        new = {(row["queue"], row["id"]) for row in rows}
        stored = []
        for job in jobs:  # an id twice in one batch: the first is the one stored
            key = (job.queue, job.id)
            stored.append(key in new)
            new.discard(key)
        return stored

    async def _enqueue_children(self, jobs: Sequence[Job], connection: Any) -> list[bool]:
        """Store jobs some of which have parents, in one transaction (a savepoint in the
        caller's): the parents' rows locked in key order, each child resolved against them
        (`parent_ended`) and recorded on those still pending, then every job inserted. A
        statement ending a parent waits for its lock and then sees the child (see the schema's
        version 6)."""
        refs = {ref(job.queue, job.id) for job in jobs}
        refs.update(parent for job in jobs if job.deps for parent in job.deps["parents"])
        keys = sorted(split_ref(reference) for reference in refs)
        lock = self.sql(
            "lock_parents",
            "SELECT j.queue, j.id, j.status, j.result::text AS result FROM {s}.jobs AS j "  # any codec
            "JOIN unnest($1::text[], $2::text[]) AS k(queue, id) ON j.queue = k.queue AND j.id = k.id "
            "ORDER BY j.queue, j.id FOR UPDATE OF j",
        )
        append = self.sql(
            "add_children",
            """
            UPDATE {s}.jobs AS j SET deps = jsonb_set(coalesce(j.deps, '{}'::jsonb), '{children}',
                coalesce(j.deps -> 'children', '[]'::jsonb) || a.refs)
            FROM unnest($1::text[], $2::text[], $3::text[]::jsonb[]) AS a(queue, id, refs)
            WHERE j.queue = a.queue AND j.id = a.id
            """,
        )
        columns = (*_ENQUEUE_COLUMNS, "deps", "error", "finished_at")
        insert = self.sql(
            "enqueue:deps", _enqueue_sql(f"SELECT * FROM unnest({_placeholders(columns)})", True)
        )
        await self.connect()
        async with contextlib.AsyncExitStack() as stack:
            if connection is None:
                connection = await stack.enter_async_context(self.pool.acquire())
            async with connection.transaction():
                rows = await self._fetch(
                    "enqueue", lock, [k[0] for k in keys], [k[1] for k in keys], conn=connection
                )
                stored = {ref(row["queue"], row["id"]): row for row in rows}
                placed, appended, failed = self._depend_all(jobs, stored, time.time())
                if appended:
                    targets = sorted(appended)
                    await self._fetch(
                        "enqueue",
                        append,
                        [split_ref(t)[0] for t in targets],
                        [split_ref(t)[1] for t in targets],
                        [orjson.dumps(appended[t]).decode() for t in targets],
                        conn=connection,
                    )
                added = await self._fetch(
                    "enqueue", insert, *[_column(placed, name) for name in columns], conn=connection
                )
        new = {(row["queue"], row["id"]) for row in added if row["queue"] is not None}
        self.failed_by_parents([job for job in failed if (job.queue, job.id) in new])
        result = []
        for job in jobs:
            key = (job.queue, job.id)
            result.append(key in new)
            new.discard(key)
        return result

    @staticmethod
    def _depend_all(
        jobs: Sequence[Job], stored: dict[str, Any], now: float
    ) -> tuple[list[Job], dict[str, list[str]], list[Job]]:
        """The jobs as stored (children resolved by their parents' states), the children to
        append to each stored parent, and the children failed at their add. A parent is the
        stored job, else one earlier in the call (a flow); neither is `UnknownParentError`."""
        earlier: dict[str, Job] = {}
        placed: list[Job] = []
        appended: dict[str, list[str]] = {}
        failed: list[Job] = []
        for job in jobs:
            own = ref(job.queue, job.id)
            if own in stored or own in earlier:
                continue  # an id taken: nothing stored, nothing recorded
            if job.deps:
                deps = copy.deepcopy(job.deps)
                job = job.clone()
                job.deps = deps
                for reference in list(deps["pending"]):
                    parent = earlier.get(reference) or _stand_in(reference, stored.get(reference), job)
                    parent_ended(job, parent, now)
                    if job.status is JobState.FAILED:
                        failed.append(job)
                        break
                    if reference not in deps["pending"]:
                        continue
                    if reference in earlier:
                        add_child(parent, job)
                    else:
                        appended.setdefault(reference, []).append(own)
            earlier[own] = job
            placed.append(job)
        return placed, appended, failed

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
        """`deduplicate` (see the schema's versions 4, 7 and 8) decides and takes the key, and
        counts a duplicate or a debounce in the queue totals, then the job is stored as by
        `enqueue`, and a replaced holder's blocked children are told it was removed
        (`parents_ended`), in one transaction (a savepoint in the caller's, with `connection`),
        whose commit releases the key's row to the next producer."""
        await self._remember_queue(job.queue)
        decide = self.sql(
            "deduplicate",
            "SELECT decision, holder, replaced, children "
            "FROM {s}.deduplicate($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        removed = self.sql(
            "deduplicate:removed",
            "SELECT job FROM {s}.parents_ended(jsonb_build_array(jsonb_build_object("
            "'queue', $1::text, 'id', $2::text, 'status', 'removed', 'children', $3::jsonb)), $4) AS job",
        )
        failed: list[Job] = []
        insert = self.sql(
            "enqueue:True", _enqueue_sql(f"VALUES ({_placeholders(_ENQUEUE_COLUMNS, array=False)})")
        )
        ttl, flags = deduplication.ttl_s, (deduplication.extend, deduplication.replace)
        await self.connect()
        async with contextlib.AsyncExitStack() as stack:
            if connection is None:
                connection = await stack.enter_async_context(self.pool.acquire())
            try:
                async with connection.transaction():
                    (row,) = await self._fetch(
                        "deduplicate",
                        decide,
                        job.queue,
                        deduplication.id,
                        job.id,
                        job.task,
                        job.created_at,
                        now,
                        ttl,
                        *flags,
                        conn=connection,
                    )
                    if row["decision"] == "store":
                        args = [_column([job], name)[0] for name in _ENQUEUE_COLUMNS]
                        if not any(
                            added["id"] == job.id
                            for added in await self._fetch("enqueue", insert, *args, conn=connection)
                        ):
                            raise _IdTaken  # by a plain enqueue since the check: undo the key
                        if row["children"] is not None:
                            args = [job.queue, row["replaced"], row["children"], now]
                            rows = await self._fetch("deduplicate", removed, *args, conn=connection)
                            failed = _jobs([r["job"] for r in rows])
            except _IdTaken:
                return Deduplicated(False, None)
        self.failed_by_parents(failed)
        decision, holder, replaced = row["decision"], row["holder"], row["replaced"]
        return Deduplicated(decision in ("store", "again"), holder, replaced)

    async def deduplication_holder(self, queue: str, deduplication_id: str, now: float) -> str | None:
        query = self.sql(
            "deduplication_holder",
            f"""
            SELECT d.job_id FROM {{s}}.dedup AS d
            LEFT JOIN {{s}}.jobs AS j ON j.queue = d.queue AND j.id = d.job_id
            WHERE d.queue = $1 AND d.id = $2 AND CASE WHEN d.expires_at IS NOT NULL THEN d.expires_at > $3
                ELSE j.status IS NOT NULL AND j.status NOT IN {_FINISHED_SQL} END
            """,
        )
        rows = await self._fetch("deduplication_holder", query, queue, deduplication_id, now)
        return str(rows[0]["job_id"]) if rows else None

    async def remove_deduplication_key(self, queue: str, deduplication_id: str) -> bool:
        query = self.sql(
            "remove_deduplication_key", "DELETE FROM {s}.dedup WHERE queue = $1 AND id = $2 RETURNING 1"
        )
        return bool(await self._fetch("remove_deduplication_key", query, queue, deduplication_id))

    # -- consuming --------------------------------------------------------------------
    async def claim(
        self, queue: str, worker_id: str, limit: int, lease_s: float, now: float, rate: RateLimit | None
    ) -> ClaimResult:
        query = self.sql("claim", "SELECT wait_s, job FROM {s}.claim($1, $2, $3, $4, $5, $6, $7)")
        rate_args = (rate.limit, rate.interval_s) if rate is not None else (0, 1.0)
        rows = await self._fetch("claim", query, queue, limit, worker_id, now + lease_s, now, *rate_args)
        if rows and rows[0]["wait_s"] is not None:
            return ClaimResult([], float(rows[0]["wait_s"]))
        claimed = sorted((row["job"] for row in rows), key=lambda job: (job["priority"], job["seq"]))
        result = ClaimResult([])  # in claim order: an UPDATE returns rows as it finds them
        for record in claimed:
            found = _job_or_reason(record)
            if isinstance(found, str):
                task = record["task"] if isinstance(record["task"], str) else "?"
                result.unreadable.append(UnreadableJob(record["id"], queue, record["token"], found, task))
            else:
                result.jobs.append(found)
        return result

    async def fail_unreadable(
        self, jobs: Sequence[UnreadableJob], now: float, retention: Retention
    ) -> list[bool]:
        query = self.sql(
            "fail_unreadable",
            f"""
            WITH failed AS (
                UPDATE {{s}}.jobs AS j
                SET status = 'failed', token = j.token + 1, finished_at = $5, lease_until = NULL,
                    worker_id = NULL,
                    error = jsonb_build_object('type', 'MalformedJobError', 'message', o.reason)
                FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[]) AS o(queue, id, token, reason)
                WHERE j.queue = o.queue AND j.id = o.id AND j.token = o.token AND j.status = 'active'
                RETURNING j.queue, j.id, j.task, j.status, j.result, j.finished_at,
                    CASE WHEN jsonb_typeof(j.deps) = 'object' THEN j.deps END AS deps
            ), counted AS ({_count_sql("failed", ("failed",))}
            ){_freed_sql("failed", "counted")}
            SELECT queue, id, NULL::{{s}}.jobs AS failed FROM failed
            UNION ALL
            SELECT NULL, NULL, job FROM freed
            """,
        )
        columns = ([job.queue for job in jobs], [job.id for job in jobs], [job.token for job in jobs])
        rows = await self._fetch("fail_unreadable", query, *columns, [job.reason for job in jobs], now)
        own, cascaded = _apart(rows)
        self.failed_by_parents(cascaded)
        failed = {(row["queue"], row["id"]) for row in own}
        for queue in {queue for queue, _ in failed}:
            await self._trim(queue, JobState.FAILED.value, retention.keep)
        return [(job.queue, job.id) in failed for job in jobs]

    async def wait_for_jobs(self, queue: str, timeout_s: float) -> None:
        await self._wait(f"w:{queue}", timeout_s)

    async def finish(self, jobs: Sequence[Job], retention: Retention) -> list[bool]:
        if not jobs:
            return []
        fields = ("queue", "id", "token", "status", *OUTCOME_FIELDS)
        columns = [_column(jobs, name) for name in fields]
        sets = ", ".join(f"{name} = o.{name}" for name in OUTCOME_FIELDS)
        keep = len(fields) + 1
        query = self.sql(
            "finish",
            f"""
            WITH o AS (
                SELECT * FROM unnest({_placeholders(fields)}) AS o({", ".join(fields)})
            ), done AS (
                UPDATE {{s}}.jobs AS j
                SET status = o.status, token = j.token + 1, settled_token = o.token,
                    lease_until = NULL, worker_id = NULL, {sets},
                    seq = CASE WHEN o.status = 'waiting' THEN nextval('{{s}}.jobs_seq') ELSE j.seq END
                FROM o
                WHERE j.queue = o.queue AND j.id = o.id AND j.token = o.token  -- still ours: active
                RETURNING j.queue, j.id, j.task, j.status, j.result, j.finished_at, j.deps
            ), counted AS ({_count_sql("done", _OUTCOME_TOTAL_SQL)}
            ), excess AS (  -- what the finished states will hold past `keep` once these are in
                SELECT o.queue, o.status, count(*) + coalesce(max(c.n), 0) - ${keep} AS n
                FROM o LEFT JOIN (
                    SELECT queue, status, sum(n) AS n FROM {{s}}.counts GROUP BY queue, status
                ) AS c ON c.queue = o.queue AND c.status = o.status
                WHERE o.status IN {_FINISHED_SQL}
                GROUP BY o.queue, o.status
            ), trimmed AS (  -- the oldest of them go, in the same statement
                DELETE FROM {{s}}.jobs WHERE ctid = ANY(ARRAY(
                    SELECT old.ctid FROM excess CROSS JOIN LATERAL (
                        SELECT j.ctid FROM {{s}}.jobs AS j
                        WHERE j.queue = excess.queue AND j.status = excess.status
                            AND j.status IN {_FINISHED_SQL}
                        ORDER BY j.finished_at LIMIT greatest(excess.n, 0)
                    ) AS old
                    WHERE excess.n > 0
                ))
            ){_woken_sql("done")}{_freed_sql("done", "counted")}
            SELECT queue, id, NULL::{{s}}.jobs AS failed FROM done
            WHERE (SELECT n FROM woken) = 0  -- always: it runs `woken`
            UNION ALL
            SELECT j.queue, j.id, NULL FROM {{s}}.jobs AS j JOIN o ON j.queue = o.queue AND j.id = o.id
            WHERE j.settled_token = o.token
            UNION ALL
            SELECT NULL, NULL, job FROM freed
            """,
        )
        rows = await self._fetch("finish", query, *columns, retention.keep)
        self._count_churn(len(jobs))
        own, cascaded = _apart(rows)
        self.failed_by_parents(cascaded)
        accepted = {(row["queue"], row["id"]) for row in own}
        return [(job.queue, job.id) in accepted for job in jobs]

    def _count_churn(self, settled: int) -> None:
        """Each job leaves about three dead row versions (its claim, its outcome, its trim).
        Autovacuum visits a database once a minute at most, time enough for a busy queue to
        leave millions; so every `vacuum_every` outcomes this process vacuums `jobs` itself,
        in the background (a worker already vacuuming it is skipped, not waited for)."""
        if self.vacuum_every is None:
            return
        self._settled_since_vacuum += settled
        if self._settled_since_vacuum >= self.vacuum_every and (
            self._vacuuming is None or self._vacuuming.done()
        ):
            self._settled_since_vacuum = 0
            self._vacuuming = asyncio.get_running_loop().create_task(self._vacuum())

    async def _vacuum(self) -> None:
        try:
            async with self.pool.acquire() as conn:
                await conn.execute(self.sql("vacuum", "VACUUM (SKIP_LOCKED) {s}.jobs"))
        except asyncpg.InsufficientPrivilegeError as exc:
            self.vacuum_every = None
            log.warning("cannot VACUUM %s.jobs (%s): leaving it to autovacuum", self.schema, exc)
        except Exception:
            log.warning("VACUUM of %s.jobs failed; trying again later", self.schema, exc_info=True)

    async def _trim(self, queue: str, status: str, keep: int, conn: Any = None) -> int:
        """Delete all but the newest `keep` jobs of a finished state, when there are more."""
        query = self.sql(
            "trim",
            f"""
            WITH extra AS (
                SELECT greatest(
                    coalesce((SELECT sum(n) FROM {{s}}.counts WHERE queue = $1 AND status = $2), 0) - $3, 0
                ) AS n
            ), gone AS (
                DELETE FROM {{s}}.jobs WHERE ctid = ANY(ARRAY(
                    SELECT ctid FROM {{s}}.jobs
                    WHERE queue = $1 AND status = $2 AND status IN {_FINISHED_SQL}
                    ORDER BY finished_at LIMIT (SELECT n FROM extra)
                ))
                RETURNING 1
            )
            SELECT count(*) AS n FROM gone
            """,
        )
        rows = await self._fetch("trim", query, queue, status, keep, conn=conn)
        return int(rows[0]["n"])

    async def release(self, jobs: Sequence[Job], transition: Transition, now: float) -> None:
        if not jobs:
            return
        clause = _set_clause(transition, 4, False)
        query = self.sql(
            f"release:{transition.name}:{clause}",
            f"""
            WITH done AS (
                UPDATE {{s}}.jobs AS j SET {clause}
                FROM unnest($1::text[], $2::text[], $3::bigint[]) AS o(queue, id, token)
                WHERE j.queue = o.queue AND j.id = o.id AND j.token = o.token
                    AND j.status IN ({_sources(transition)})
                RETURNING j.queue, j.task
            ){_counted(transition)}
            SELECT count(*) FROM done
            """,
        )
        args = ([job.queue for job in jobs], [job.id for job in jobs], [job.token for job in jobs])
        await self._fetch("release", query, *args, *_set_args(transition, now, False))

    async def heartbeat(self, worker: WorkerInfo, jobs: Sequence[Job], lease_until: float) -> list[str]:
        await self._remember_queue(worker.queue)
        info = {name: getattr(worker, name) for name in WorkerInfo.__dataclass_fields__}
        query = self.sql(
            "heartbeat",
            """
            WITH alive AS (
                INSERT INTO {s}.workers (queue, id, info, expires_at) VALUES ($1, $2, $3, $4)
                ON CONFLICT (queue, id) DO UPDATE SET info = EXCLUDED.info, expires_at = EXCLUDED.expires_at
            ), held AS (
                UPDATE {s}.jobs AS j SET lease_until = $5
                FROM unnest($6::text[], $7::bigint[]) AS o(id, token)
                WHERE j.queue = $1 AND j.id = o.id AND j.token = o.token AND j.status = 'active'
                RETURNING j.id
            )
            SELECT id FROM held
            """,
        )
        ids, tokens = [job.id for job in jobs], [job.token for job in jobs]
        rows = await self._fetch(
            "heartbeat", query, worker.queue, worker.id, info, worker.expires_at, lease_until, ids, tokens
        )
        kept = {row["id"] for row in rows}
        return [job_id for job_id in ids if job_id not in kept]

    async def remove_worker(self, worker: WorkerInfo) -> None:
        query = self.sql("remove_worker", "DELETE FROM {s}.workers WHERE queue = $1 AND id = $2")
        await self._fetch("remove_worker", query, worker.queue, worker.id)

    async def save_progress(self, job: Job) -> bool:
        query = self.sql(
            "progress",
            "UPDATE {s}.jobs SET progress = $4::jsonb WHERE queue = $1 AND id = $2 AND token = $3 "
            "AND status = 'active' RETURNING 1",
        )
        return bool(await self._fetch("progress", query, job.queue, job.id, job.token, job.progress))

    # -- scheduling -------------------------------------------------------------------
    async def promote_due(self, queue: str, now: float, limit: int) -> tuple[int, float | None]:
        query = self.sql(
            "promote",
            """
            WITH moved AS (
                UPDATE {s}.jobs AS j
                SET status = 'waiting', ready_at = $2, token = j.token + 1, seq = nextval('{s}.jobs_seq')
                WHERE ctid = ANY(ARRAY(
                    SELECT ctid FROM {s}.jobs
                    WHERE queue = $1 AND status = 'delayed' AND delay_until <= $2
                    ORDER BY delay_until LIMIT $3 FOR UPDATE SKIP LOCKED
                ))
                RETURNING 1
            )
            SELECT (SELECT count(*) FROM moved) AS promoted,
                (SELECT delay_until FROM {s}.jobs WHERE queue = $1 AND status = 'delayed' AND delay_until > $2
                 ORDER BY delay_until LIMIT 1) AS following
            """,
        )
        (row,) = await self._fetch("promote", query, queue, now, limit)
        return int(row["promoted"]), row["following"]

    async def wait_for_schedule(self, queue: str, timeout_s: float) -> None:
        await self._wait(f"d:{queue}", timeout_s)

    async def recover_stalled(self, queue: str, now: float, recovery: StallRecovery) -> list[Job]:
        recovered: list[Job] = []
        cascaded: list[Job] = []
        await self.connect()
        async with self.pool.acquire() as conn, conn.transaction():
            for transition, test in ((recovery.fail, ">"), (recovery.requeue, "<=")):
                clause = _set_clause(transition, 3, True)
                query = self.sql(
                    f"recover:{test}:{clause}",
                    f"""
                    WITH done AS (
                        UPDATE {{s}}.jobs AS j SET {clause}
                        WHERE ctid = ANY(ARRAY(
                            SELECT ctid FROM {{s}}.jobs
                            WHERE queue = $1 AND status = 'active' AND lease_until < $3
                                AND stalls + 1 {test} $2
                            ORDER BY lease_until LIMIT {_RECOVER_BATCH} FOR UPDATE SKIP LOCKED
                        ))
                        RETURNING j.*
                    ){_counted(transition)}{_freed_sql("done", _after(transition))}
                    SELECT *, NULL::{{s}}.jobs AS failed FROM done
                    UNION ALL
                    SELECT (NULL::{{s}}.jobs).*, job FROM freed
                    """,
                )
                args = (queue, recovery.max_stalls, *_set_args(transition, now, True))
                rows = await self._fetch("recover", query, *args, conn=conn)
                own, failed = _apart(rows)
                recovered += _jobs(own)
                cascaded += failed
            if any(job.status in TERMINAL_STATES for job in recovered):
                await self._trim(queue, JobState.FAILED.value, recovery.retention.keep, conn=conn)
        self.failed_by_parents(cascaded)
        return recovered

    async def add_repeatable(self, repeatable: Repeatable) -> bool:
        await self._remember_queue(repeatable.queue)
        query = self.sql(
            "add_repeatable",
            "INSERT INTO {s}.repeatables (queue, key, record, next_run_at) VALUES ($1, $2, $3, $4) "
            "ON CONFLICT DO NOTHING RETURNING 1",
        )
        rows = await self._fetch(
            "add_repeatable",
            query,
            repeatable.queue,
            repeatable.key,
            repeatable.to_record(),
            repeatable.next_run_at,
        )
        return bool(rows)

    async def remove_repeatable(self, queue: str, key: str) -> bool:
        query = self.sql(
            "remove_repeatable", "DELETE FROM {s}.repeatables WHERE queue = $1 AND key = $2 RETURNING 1"
        )
        return bool(await self._fetch("remove_repeatable", query, queue, key))

    async def stored_repeatables(self, queue: str) -> list[tuple[str, object]]:
        query = self.sql(
            "repeatables",
            "SELECT key, record, next_run_at FROM {s}.repeatables WHERE queue = $1 ORDER BY key",
        )
        rows = await self._fetch("repeatables", query, queue)
        return [(row["key"], schedule_record(row["record"], row["next_run_at"])) for row in rows]

    async def advance_repeatable(self, queue: str, key: str, expected_at: float, next_at: float) -> bool:
        query = self.sql(
            "advance_repeatable",
            "UPDATE {s}.repeatables SET next_run_at = $4 WHERE queue = $1 AND key = $2 "
            "AND next_run_at IN ($3, $4) RETURNING 1",
        )
        return bool(await self._fetch("advance_repeatable", query, queue, key, expected_at, next_at))

    # -- control and inspection -------------------------------------------------------
    async def set_paused(self, queue: str, paused: bool) -> None:
        query = self.sql(
            "pause",
            "WITH q AS (INSERT INTO {s}.queues AS q (name, paused) VALUES ($1, $2) "
            "ON CONFLICT (name) DO UPDATE SET paused = EXCLUDED.paused) "
            "SELECT CASE WHEN $2 THEN NULL ELSE pg_notify($3, 'w:' || $1) END",
        )
        self._known_queues.add(queue)
        await self._fetch(
            "resume" if not paused else "pause", query, queue, paused, pg_schema.channel(self.schema)
        )

    async def transition(
        self, queue: str, job_id: str, transition: Transition, now: float, retention: Retention
    ) -> Job | None:
        clause = _set_clause(transition, 3, False)
        first_stamp = transition.stamp[0] if transition.stamp else None
        resent = (
            f"OR (j.status = '{transition.target.value}' AND j.{first_stamp} = $3)" if first_stamp else ""
        )
        query = self.sql(
            f"transition:{transition.name}:{clause}",
            f"""
            WITH done AS (
                UPDATE {{s}}.jobs AS j SET {clause}
                WHERE j.queue = $1 AND j.id = $2 AND j.status IN ({_sources(transition)})
                RETURNING j.*
            ){_counted(transition)}{_woken_sql("done")}{_freed_sql("done", _after(transition))}
            SELECT *, NULL::{{s}}.jobs AS failed FROM done
            WHERE (SELECT n FROM woken) = 0  -- always: it runs `woken`
            UNION ALL
            SELECT j.*, NULL FROM {{s}}.jobs AS j WHERE j.queue = $1 AND j.id = $2 AND (false {resent})
            UNION ALL
            SELECT (NULL::{{s}}.jobs).*, job FROM freed
            """,
        )
        found = await self._fetch("transition", query, queue, job_id, *_set_args(transition, now, False))
        rows, cascaded = _apart(found)
        self.failed_by_parents(cascaded)
        if not rows:
            return None
        if transition.target in TERMINAL_STATES:
            await self._trim(queue, transition.target.value, retention.keep)
        return _job(rows[0])

    async def get_job(self, queue: str, job_id: str) -> Job | None:
        query = self.sql("get_job", "SELECT * FROM {s}.jobs WHERE queue = $1 AND id = $2")
        rows = await self._fetch("get_job", query, queue, job_id)
        if not rows:
            return None
        found = _job_or_reason(rows[0])
        if isinstance(found, str):
            raise MalformedJobError(found)
        return found

    async def list_jobs(self, queue: str, state: JobState, limit: int, offset: int = 0) -> list[Job]:
        order = {
            JobState.WAITING: "priority, seq",
            JobState.DELAYED: "delay_until",
            JobState.ACTIVE: "lease_until",
            JobState.BLOCKED: "seq",
        }.get(state, "finished_at DESC")
        query = self.sql(  # the state written out: a generic plan then uses its partial index
            f"list:{state.value}",
            f"SELECT * FROM {{s}}.jobs WHERE queue = $1 AND status = '{state.value}' "
            f"ORDER BY {order} LIMIT $2 OFFSET $3",
        )
        return _jobs(await self._fetch("list_jobs", query, queue, limit, offset))

    async def remove_job(self, queue: str, job_id: str, retention: Retention = DEFAULT_RETENTION) -> bool:
        """One statement: the delete, its result waiters woken, and its blocked children told
        (`_removed_sql`); the children it fails are kept by `purge_finished`."""
        query = self.sql(
            "remove_job",
            f"""
            WITH gone AS (
                DELETE FROM {{s}}.jobs WHERE queue = $1 AND id = $2 AND status <> 'active'
                RETURNING queue, id, 'cancelled' AS status,  -- a removal ends the job for its waiters
                    status AS was, CASE WHEN jsonb_typeof(deps) = 'object' THEN deps END AS deps
            ){_woken_sql("gone")}{_removed_sql("gone")}
            SELECT true AS removed, NULL::{{s}}.jobs AS failed FROM gone WHERE (SELECT n FROM woken) = 0
            UNION ALL
            SELECT NULL, job FROM freed
            """,
        )
        rows = await self._fetch("remove_job", query, queue, job_id, time.time())
        own, cascaded = _apart(rows, "removed")
        self.failed_by_parents(cascaded)
        return any(row["removed"] for row in own)

    async def drain(
        self, queue: str, include_delayed: bool = False, retention: Retention = DEFAULT_RETENTION
    ) -> int:
        query = self.sql(
            "drain",
            f"""
            WITH gone AS (
                DELETE FROM {{s}}.jobs WHERE queue = $1 AND (status = 'waiting'
                    OR ($2 AND status = 'delayed' AND repeat_key IS NULL))
                RETURNING queue, id, status AS was,
                    CASE WHEN jsonb_typeof(deps) = 'object' THEN deps END AS deps
            ){_removed_sql("gone")}
            SELECT count(*) AS n, NULL::{{s}}.jobs AS failed FROM gone
            UNION ALL
            SELECT NULL, job FROM freed
            """,
        )
        rows = await self._fetch("drain", query, queue, include_delayed, time.time())
        own, cascaded = _apart(rows, "n")
        self.failed_by_parents(cascaded)
        return sum(int(row["n"]) for row in own)

    async def purge_finished(self, queue: str, now: float, retention: Retention) -> int:
        """Delete finished jobs past the retention in batches of 5,000 (short transactions,
        so vacuum keeps up), then all but the newest `keep` of each finished state."""
        query = self.sql(
            "purge",
            f"""
            WITH gone AS (
                DELETE FROM {{s}}.jobs WHERE ctid = ANY(ARRAY(
                    SELECT ctid FROM {{s}}.jobs
                    WHERE queue = $1 AND status = $2 AND status IN {_FINISHED_SQL} AND finished_at < $3
                    LIMIT {_PURGE_BATCH}
                ))
                RETURNING 1
            )
            SELECT count(*) AS n FROM gone
            """,
        )
        removed = 0
        for status in _FINISHED:
            while True:
                (row,) = await self._fetch("purge", query, queue, status, now - retention.ttl_s)
                removed += int(row["n"])
                if int(row["n"]) < _PURGE_BATCH:
                    break
            await self._trim(queue, status, retention.keep)
        await self._trim_events(queue)
        expired_keys = self.sql(
            "purge_dedup",
            "DELETE FROM {s}.dedup WHERE queue = $1 AND expires_at IS NOT NULL AND expires_at <= $2",
        )
        await self._fetch("purge", expired_keys, queue, now)
        return removed

    async def delete_queue(self, queue: str) -> None:
        query = self.sql(
            "delete_queue",
            """
            WITH jobs AS (DELETE FROM {s}.jobs WHERE queue = $1),
                reps AS (DELETE FROM {s}.repeatables WHERE queue = $1),
                workers AS (DELETE FROM {s}.workers WHERE queue = $1),
                events AS (DELETE FROM {s}.events WHERE queue = $1),
                dedup AS (DELETE FROM {s}.dedup WHERE queue = $1)
            DELETE FROM {s}.queues WHERE name = $1
            """,
        )
        counts = self.sql(
            "delete_counts",
            "WITH totals AS (DELETE FROM {s}.totals WHERE queue = $1) "
            "DELETE FROM {s}.counts WHERE queue = $1",
        )
        await self.connect()
        async with self.pool.acquire() as conn, conn.transaction():
            await self._fetch("delete_queue", query, queue, conn=conn)
            await self._fetch("delete_queue", counts, queue, conn=conn)  # after the jobs' trigger
        self._known_queues.discard(queue)

    async def stats(self, queue: str, now: float) -> QueueStats:
        query = self.sql(
            "stats",
            """
            WITH RECURSIVE heads AS (  -- the first in line of each priority: the oldest of it
                (SELECT priority, ready_at FROM {s}.jobs WHERE queue = $1 AND status = 'waiting'
                 ORDER BY priority, seq LIMIT 1)
                UNION ALL
                SELECT next.priority, next.ready_at FROM heads CROSS JOIN LATERAL (
                    SELECT priority, ready_at FROM {s}.jobs
                    WHERE queue = $1 AND status = 'waiting' AND priority > heads.priority
                    ORDER BY priority, seq LIMIT 1
                ) AS next
            )
            SELECT
                (SELECT coalesce(jsonb_object_agg(status, n), '{}'::jsonb) FROM (
                    SELECT status, sum(n) AS n FROM {s}.counts WHERE queue = $1 GROUP BY status) AS c
                ) AS counts,
                (SELECT coalesce(jsonb_object_agg(task, by_name), '{}'::jsonb) FROM (
                    SELECT task, jsonb_object_agg(total, n) AS by_name FROM (
                        SELECT task, total, sum(n) AS n FROM {s}.totals WHERE queue = $1 GROUP BY 1, 2
                    ) AS t GROUP BY task) AS t
                ) AS totals,
                (SELECT min(ready_at) FROM heads) AS oldest,
                (SELECT paused FROM {s}.queues WHERE name = $1) AS paused,
                (SELECT coalesce(jsonb_agg(jsonb_build_array(id, info) ORDER BY id), '[]'::jsonb)
                 FROM {s}.workers WHERE queue = $1 AND expires_at >= $2) AS workers
            """,
        )
        (row,) = await self._fetch("stats", query, queue, now)
        counts = {state.value: int(row["counts"].get(state.value, 0)) for state in JobState}
        workers, unreadable = read_workers(row["workers"])
        totals = {task: {name: int(n) for name, n in names.items()} for task, names in row["totals"].items()}
        return QueueStats(counts, row["oldest"], bool(row["paused"]), workers, unreadable, totals)

    async def queues(self) -> list[str]:
        query = self.sql("queues", "SELECT name FROM {s}.queues ORDER BY name")
        return [row["name"] for row in await self._fetch("queues", query)]

    # -- cross-process events ---------------------------------------------------------
    # -- results ----------------------------------------------------------------------
    async def watch_job(self, queue: str, job_id: str) -> JobWatch:
        """Listening first, then registered in `result_waits` (once per process and job): the
        statements that end the job notify it, and only jobs someone waits for."""
        listener = await self._listening()
        key = (queue, job_id)
        channel_key = f"r:{queue}/{job_id}"
        watches = self._job_watches.get(key)
        first = watches is None
        if watches is None:
            watches = self._job_watches[key] = set()
        watch = EventWatch(lambda ended: self._unwatch(key, ended))
        watches.add(watch)
        listener.watches.setdefault(channel_key, set()).add(watch.event)
        if first:
            query = self.sql(
                "watch_job",
                """
                WITH stale AS (DELETE FROM {s}.result_waits WHERE until < $4)
                INSERT INTO {s}.result_waits (queue, id, waiter, until) VALUES ($1, $2, $3, $4 + 3600)
                ON CONFLICT (queue, id, waiter) DO UPDATE SET until = EXCLUDED.until
                """,
            )
            try:
                await self._fetch("watch_job", query, queue, job_id, self._waiter_id, time.time())
            except BaseException:
                await watch.close()
                raise
        return watch

    async def _unwatch(self, key: tuple[str, str], watch: EventWatch) -> None:
        if self._listener is not None:
            events = self._listener.watches.get(f"r:{key[0]}/{key[1]}")
            if events is not None:
                events.discard(watch.event)
                if not events:
                    del self._listener.watches[f"r:{key[0]}/{key[1]}"]
        watches = self._job_watches.get(key)
        if watches is None:
            return
        watches.discard(watch)
        if watches:
            return
        del self._job_watches[key]
        query = self.sql(
            "unwatch_job", "DELETE FROM {s}.result_waits WHERE queue = $1 AND id = $2 AND waiter = $3"
        )
        try:
            await self._fetch("unwatch_job", query, key[0], key[1], self._waiter_id)
        except Exception as exc:  # the row expires; meanwhile it costs a notification nobody reads
            log.warning("could not unregister the wait for job %s of queue %r: %s", key[1], key[0], exc)

    async def publish_events(self, events: Sequence[tuple[str, dict[str, Any]]]) -> None:
        if not events:
            return
        query = self.sql(
            "publish_events",
            "WITH added AS (INSERT INTO {s}.events (queue, name, payload) "
            "SELECT * FROM unnest($1::text[], $2::text[], $3::jsonb[]) RETURNING queue) "
            "SELECT pg_notify($4, 'e:' || queue) FROM (SELECT DISTINCT queue FROM added) AS q",
        )
        queues = [payload["queue"] for _, payload in events]
        names = [name for name, _ in events]
        payloads = [orjson.loads(orjson.dumps(payload, default=str)) for _, payload in events]
        await self._fetch("publish_events", query, queues, names, payloads, pg_schema.channel(self.schema))

    async def read_events(
        self, queue: str, after: str, block_s: float
    ) -> list[tuple[str, str, dict[str, Any]]]:
        if after == "$":
            query = self.sql(
                "last_event", "SELECT coalesce(max(position), 0) AS p FROM {s}.events WHERE queue = $1"
            )
            after = str((await self._fetch("read_events", query, queue))[0]["p"])
        query = self.sql(
            "read_events",
            "SELECT position, name, payload FROM {s}.events WHERE queue = $1 AND position > $2 "
            "ORDER BY position LIMIT 1000",
        )
        rows = await self._fetch("read_events", query, queue, int(after))
        if not rows and block_s > 0:
            await self._wait(f"e:{queue}", block_s)
            rows = await self._fetch("read_events", query, queue, int(after))
        return [(str(row["position"]), row["name"], row["payload"]) for row in rows]

    async def _trim_events(self, queue: str) -> None:
        query = self.sql(
            "trim_events",
            "DELETE FROM {s}.events WHERE queue = $1 AND position <= "
            "(SELECT max(position) FROM {s}.events WHERE queue = $1) - $2",
        )
        await self._fetch("trim_events", query, queue, self.events_keep)


def postgres_backend_from_url(url: str) -> PostgresBackend:
    """`postgresql://` or `postgres://`; `?schema=NAME` picks the schema (default asyncmq)."""
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    schema = query.pop("schema", "asyncmq")
    dsn = urlunsplit(parts._replace(scheme="postgresql", query=urlencode(query)))
    return PostgresBackend(dsn, schema=schema)
