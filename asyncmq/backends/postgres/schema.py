"""The PostgreSQL schema and its versioned migrations.

Each migration is a list of statements applied in one transaction, under an advisory lock so
that two processes starting at once apply it once. Migrations only add: they never drop a
table or a column that holds user data. `schema_version` records what is applied; a backend
refuses to run on a version it does not know (`asyncmq db migrate` applies what is missing).

Layout (every table in the backend's own schema, `asyncmq` by default):

    jobs          one row per job: a column per `asyncmq.job.Job` field, plus `seq` (the order
                  of arrival into `waiting`) and `settled_token` (an outcome sent twice is
                  recognised); fill factor 70, vacuumed often: rows move between states;
                  `deps` (a job's parents and children) from version 5
    counts        jobs per (queue, status), kept by a statement-level trigger on `jobs`
                  (updates, deletes) and by the enqueue statement itself (inserts), so a
                  scrape reads O(queues) rows, never counts the jobs; spread over 16 rows
                  (`shard`: the connection's pid) so that a claim and a finish committing
                  at once do not queue behind one row lock
    totals        the queue totals (`asyncmq.transitions.TOTALS`) per (queue, task, total),
                  counted by each statement that stores, claims or moves jobs, in the same
                  statement (the claim function's, from version 2; duplicates and debounces
                  by `deduplicate`'s, from version 7); spread over 16 rows like `counts`
    queues        one row per known queue: the paused flag and the rate limit's token bucket
    repeatables   schedules and their next firing time
    workers       live workers and when their heartbeat runs out
    events        published lifecycle events for `asyncmq events tail`, trimmed by the scheduler
    result_waits  `Queue.result` waiters: one row per (queue, job, waiting process), from version 3
    dedup         deduplication keys: the job holding each, and when it lets go by time, from
                  version 4 (see `_V4`)

Each statement that moves a batch picks its rows by an index (`FOR UPDATE SKIP LOCKED`
where others may race for them) and changes them by `ctid` (a TID scan: no join that could
turn into a scan of the table). Partial indexes serve each hot statement: claiming
(`jobs_waiting`: queue, priority, seq of waiting jobs; also the oldest waiting age, as the
first in line of each priority), promotion (`jobs_delayed`), stalled recovery (`jobs_active`)
and retention (`jobs_finished`).

The same trigger, and the enqueue statement, send `NOTIFY` on the schema's channel when a
queue gains waiting jobs (`w:<queue>`) or delayed ones (`d:<queue>`): delivered at commit, so
a job enqueued in a transaction that rolls back wakes nobody. The statements that end jobs
send `r:<queue>/<id>` for each job that has a row in `result_waits` (see `_V3`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from asyncmq.errors import ConfigurationError

if TYPE_CHECKING:
    import asyncpg

__all__ = ["LATEST", "MIGRATIONS", "applied_version", "channel", "migrate", "schema_name"]

_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,40}")
#: Serialises migrations across processes (any constant both sides agree on).
_LOCK_ID = 0x61_73_79_6E_63_6D_71  # "asyncmq"


def schema_name(name: str) -> str:
    if not _IDENTIFIER.fullmatch(name):
        raise ConfigurationError(
            f"invalid PostgreSQL schema name {name!r}: use lowercase letters, digits and '_', "
            "starting with a letter or '_', at most 41 characters"
        )
    return name


def channel(schema: str) -> str:
    """The NOTIFY channel of a schema's wake-ups."""
    return f"{schema}_wake"


_V1 = """
CREATE SEQUENCE {s}.jobs_seq;

CREATE TABLE {s}.jobs (
    queue text NOT NULL,
    id text NOT NULL,
    seq bigint NOT NULL DEFAULT nextval('{s}.jobs_seq'),
    task text NOT NULL,
    status text NOT NULL CHECK (status IN
        ('waiting', 'delayed', 'active', 'completed', 'failed', 'expired', 'cancelled')),
    priority integer NOT NULL,
    args jsonb NOT NULL DEFAULT '[]',
    kwargs jsonb NOT NULL DEFAULT '{{}}',
    max_retries integer NOT NULL DEFAULT 0,
    attempt integer NOT NULL DEFAULT 0,
    backoff jsonb,
    ttl_s double precision,
    timeout_s double precision,
    created_at double precision NOT NULL,
    delay_until double precision,
    ready_at double precision,
    started_at double precision,
    finished_at double precision,
    lease_until double precision,
    worker_id text,
    token bigint NOT NULL DEFAULT 0,
    stalls integer NOT NULL DEFAULT 0,
    result jsonb,
    error jsonb,
    progress jsonb,
    repeat_key text,
    meta jsonb NOT NULL DEFAULT '{{}}',
    settled_token bigint,
    PRIMARY KEY (queue, id)
) WITH (
    fillfactor = 70,
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_insert_scale_factor = 0.01,
    autovacuum_analyze_scale_factor = 0.02,
    autovacuum_vacuum_cost_delay = 0
);

CREATE INDEX jobs_waiting ON {s}.jobs (queue, priority, seq) WHERE status = 'waiting';
CREATE INDEX jobs_delayed ON {s}.jobs (queue, delay_until) WHERE status = 'delayed';
CREATE INDEX jobs_active ON {s}.jobs (queue, lease_until) WHERE status = 'active';
CREATE INDEX jobs_finished ON {s}.jobs (queue, status, finished_at)
    WHERE status IN ('completed', 'failed', 'expired', 'cancelled');

CREATE TABLE {s}.counts (
    queue text NOT NULL,
    status text NOT NULL,
    shard smallint NOT NULL,
    n bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (queue, status, shard)
) WITH (fillfactor = 50, autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000);

CREATE TABLE {s}.queues (
    name text PRIMARY KEY,
    paused boolean NOT NULL DEFAULT false,
    tokens double precision,
    tokens_at double precision
) WITH (fillfactor = 50);

CREATE TABLE {s}.repeatables (
    queue text NOT NULL,
    key text NOT NULL,
    record jsonb NOT NULL,
    next_run_at double precision NOT NULL,
    PRIMARY KEY (queue, key)
);

CREATE TABLE {s}.workers (
    queue text NOT NULL,
    id text NOT NULL,
    info jsonb NOT NULL,
    expires_at double precision NOT NULL,
    PRIMARY KEY (queue, id)
) WITH (fillfactor = 50);

CREATE TABLE {s}.events (
    position bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    queue text NOT NULL,
    name text NOT NULL,
    payload jsonb NOT NULL,
    at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX events_queue ON {s}.events (queue, position);

-- Keeps `counts` and wakes listeners, once per statement (a batch is one trigger call).
-- Inserts do both in their own statement (the backend's enqueue, the only one that adds jobs).
CREATE FUNCTION {s}.jobs_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        INSERT INTO {s}.counts AS c (queue, status, shard, n)
            SELECT queue, status, pg_backend_pid() % 16, -count(*) FROM old_rows GROUP BY 1, 2 ORDER BY 1, 2
        ON CONFLICT (queue, status, shard) DO UPDATE SET n = c.n + EXCLUDED.n;
    ELSE
        INSERT INTO {s}.counts AS c (queue, status, shard, n)
            SELECT queue, status, pg_backend_pid() % 16, sum(delta) FROM (
                SELECT queue, status, -1 AS delta FROM old_rows
                UNION ALL SELECT queue, status, 1 FROM new_rows) AS moved
            GROUP BY 1, 2 HAVING sum(delta) <> 0 ORDER BY 1, 2
        ON CONFLICT (queue, status, shard) DO UPDATE SET n = c.n + EXCLUDED.n;
        PERFORM pg_notify('{channel}', kind || queue) FROM (
            SELECT DISTINCT CASE n.status WHEN 'waiting' THEN 'w:' ELSE 'd:' END AS kind, n.queue
            FROM new_rows AS n JOIN old_rows AS o ON o.queue = n.queue AND o.id = n.id
            WHERE n.status IN ('waiting', 'delayed') AND o.status <> n.status) AS woken;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER jobs_updated AFTER UPDATE ON {s}.jobs
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION {s}.jobs_changed();
CREATE TRIGGER jobs_deleted AFTER DELETE ON {s}.jobs
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION {s}.jobs_changed();

-- Claims up to p_limit waiting jobs (lowest priority number, then first in), none while the
-- queue is paused, no more than its rate limit allows: one row (wait_s, NULL) when the
-- bucket holds starts back, else one row (NULL, job) per claimed job.
CREATE FUNCTION {s}.claim(
    p_queue text, p_limit integer, p_worker text, p_lease_until double precision,
    p_now double precision, p_rate integer, p_interval double precision
) RETURNS TABLE (wait_s double precision, job {s}.jobs) LANGUAGE plpgsql AS $$
DECLARE
    v_paused boolean;
    v_tokens double precision;
    v_at double precision;
    v_per_s double precision;
    v_claimed integer;
BEGIN
    IF p_rate > 0 THEN
        INSERT INTO {s}.queues (name) VALUES (p_queue) ON CONFLICT DO NOTHING;
        SELECT q.paused, q.tokens, q.tokens_at INTO v_paused, v_tokens, v_at
            FROM {s}.queues AS q WHERE q.name = p_queue FOR UPDATE;
    ELSE
        SELECT q.paused INTO v_paused FROM {s}.queues AS q WHERE q.name = p_queue;
    END IF;
    IF v_paused THEN
        RETURN;
    END IF;
    IF p_rate > 0 THEN
        v_per_s := p_rate / p_interval;
        v_tokens := least(
            p_rate, coalesce(v_tokens, p_rate) + greatest(0, p_now - coalesce(v_at, p_now)) * v_per_s);
        IF v_tokens < 1 THEN
            UPDATE {s}.queues SET tokens = v_tokens, tokens_at = p_now WHERE name = p_queue;
            RETURN QUERY SELECT (1 - v_tokens) / v_per_s, NULL::{s}.jobs;
            RETURN;
        END IF;
        p_limit := least(p_limit, floor(v_tokens)::integer);
    END IF;
    RETURN QUERY
        UPDATE {s}.jobs AS j
        SET status = 'active', attempt = j.attempt + 1, token = j.token + 1,
            worker_id = p_worker, lease_until = p_lease_until
        WHERE j.ctid = ANY(ARRAY(
            SELECT w.ctid FROM {s}.jobs AS w
            WHERE w.queue = p_queue AND w.status = 'waiting'
            ORDER BY w.priority, w.seq
            LIMIT p_limit
            FOR UPDATE SKIP LOCKED
        ))
        RETURNING NULL::double precision, j;
    IF p_rate > 0 THEN
        GET DIAGNOSTICS v_claimed = ROW_COUNT;
        UPDATE {s}.queues SET tokens = v_tokens - v_claimed, tokens_at = p_now WHERE name = p_queue;
    END IF;
END $$;
"""

# The queue totals (`asyncmq.transitions.TOTALS`). Each statement that moves jobs counts them
# itself, in a CTE beside its change, as the enqueue statement counts new jobs in `counts`: a
# claim in `claimed`, an outcome in its status's total, a transition in the ones it names.
# (The jobs trigger could infer them from each moved row's old and new version instead, but
# that join and its grouping cost about a sixth of a claimed and finished job's time in the
# database.)
_V2 = """
CREATE TABLE {s}.totals (
    queue text NOT NULL,
    task text NOT NULL,
    total text NOT NULL,
    shard smallint NOT NULL,
    n bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (queue, task, total, shard)
) WITH (fillfactor = 50, autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000);

-- As in version 1, and counts the claimed jobs in their task's `claimed` total.
-- Claims up to p_limit waiting jobs (lowest priority number, then first in), none while the
-- queue is paused, no more than its rate limit allows: one row (wait_s, NULL) when the
-- bucket holds starts back, else one row (NULL, job) per claimed job.
CREATE OR REPLACE FUNCTION {s}.claim(
    p_queue text, p_limit integer, p_worker text, p_lease_until double precision,
    p_now double precision, p_rate integer, p_interval double precision
) RETURNS TABLE (wait_s double precision, job {s}.jobs) LANGUAGE plpgsql AS $$
DECLARE
    v_paused boolean;
    v_tokens double precision;
    v_at double precision;
    v_per_s double precision;
    v_claimed integer;
BEGIN
    IF p_rate > 0 THEN
        INSERT INTO {s}.queues (name) VALUES (p_queue) ON CONFLICT DO NOTHING;
        SELECT q.paused, q.tokens, q.tokens_at INTO v_paused, v_tokens, v_at
            FROM {s}.queues AS q WHERE q.name = p_queue FOR UPDATE;
    ELSE
        SELECT q.paused INTO v_paused FROM {s}.queues AS q WHERE q.name = p_queue;
    END IF;
    IF v_paused THEN
        RETURN;
    END IF;
    IF p_rate > 0 THEN
        v_per_s := p_rate / p_interval;
        v_tokens := least(
            p_rate, coalesce(v_tokens, p_rate) + greatest(0, p_now - coalesce(v_at, p_now)) * v_per_s);
        IF v_tokens < 1 THEN
            UPDATE {s}.queues SET tokens = v_tokens, tokens_at = p_now WHERE name = p_queue;
            RETURN QUERY SELECT (1 - v_tokens) / v_per_s, NULL::{s}.jobs;
            RETURN;
        END IF;
        p_limit := least(p_limit, floor(v_tokens)::integer);
    END IF;
    RETURN QUERY
        WITH claimed AS (
            UPDATE {s}.jobs AS j
            SET status = 'active', attempt = j.attempt + 1, token = j.token + 1,
                worker_id = p_worker, lease_until = p_lease_until
            WHERE j.ctid = ANY(ARRAY(
                SELECT w.ctid FROM {s}.jobs AS w
                WHERE w.queue = p_queue AND w.status = 'waiting'
                ORDER BY w.priority, w.seq
                LIMIT p_limit
                FOR UPDATE SKIP LOCKED
            ))
            RETURNING j
        ), counted AS (
            INSERT INTO {s}.totals AS t (queue, task, total, shard, n)
            SELECT p_queue, (c.j).task, 'claimed', pg_backend_pid() % 16, count(*) FROM claimed AS c
            GROUP BY 2 ORDER BY 2
            ON CONFLICT (queue, task, total, shard) DO UPDATE SET n = t.n + EXCLUDED.n
        )  -- before the trigger's `counts`: every statement locks totals first
        SELECT NULL::double precision, c.j FROM claimed AS c;
    IF p_rate > 0 THEN
        GET DIAGNOSTICS v_claimed = ROW_COUNT;
        UPDATE {s}.queues SET tokens = v_tokens - v_claimed, tokens_at = p_now WHERE name = p_queue;
    END IF;
END $$;
"""

# `Queue.result` waiters. A waiting process (a backend instance) registers here before it
# reads the job; the statements that end jobs (finish, a transition, a removal) pass the jobs
# they ended to `wake_result_waiters`, which notifies `r:<queue>/<id>` for those that have a
# row, and while the table is empty only looks at it. A function, because the statements are
# planned at each call and its queries once per session: the same lines written into the
# finish statement cost a single job's finish ~80 us of planning, the call ~40 us, nothing
# measurable from batches of 10. (Statement triggers on `jobs` doing it would cover every
# statement at once, but more than doubled the finish statement's time.) `until` bounds the
# rows of a process that vanished: the next registration deletes those past it.
_V3 = """
CREATE TABLE {s}.result_waits (
    queue text NOT NULL,
    id text NOT NULL,
    waiter text NOT NULL,
    until double precision NOT NULL,
    PRIMARY KEY (queue, id, waiter)
);

-- Called once by each statement that ends jobs, with the (queue, id) of those it ended. A
-- function, so that its queries are planned once per session, not with every statement.
CREATE FUNCTION {s}.wake_result_waiters(p_queues text[], p_ids text[]) RETURNS integer
LANGUAGE plpgsql AS $$
BEGIN
    IF p_ids IS NULL OR NOT EXISTS (SELECT 1 FROM {s}.result_waits) THEN
        RETURN 0;
    END IF;
    PERFORM pg_notify('{channel}', 'r:' || w.queue || '/' || w.id)
    FROM {s}.result_waits AS w
    JOIN unnest(p_queues, p_ids) AS e(queue, id) ON w.queue = e.queue AND w.id = e.id;
    RETURN 0;
END $$;
"""

# Deduplication keys (`asyncmq.deduplication`): a row per (queue, key) naming the job holding
# it, and when it lets go by time (NULL: when that job is finished or deleted). `deduplicate`
# decides a deduplicated enqueue under the key's row lock, which it holds to the end of the
# caller's transaction, where the job is then stored: producers of one key queue behind each
# other. A function, because each statement of it sees what committed before that statement
# (a single statement would judge the holder from the snapshot it began with, missing a job
# that the producer it waited for had just committed).
_V4 = """
CREATE TABLE {s}.dedup (
    queue text NOT NULL,
    id text NOT NULL,
    job_id text NOT NULL,
    expires_at double precision,
    PRIMARY KEY (queue, id)
);
CREATE INDEX dedup_expiring ON {s}.dedup (queue, expires_at) WHERE expires_at IS NOT NULL;

-- The decision for job p_id (created at p_created_at) given key p_key at p_now: one row
--   ('store', p_id, replaced)  the key is now the job's: store it (having removed `replaced`,
--                              the delayed holder, when not NULL);
--   ('again', p_id, NULL)      the job holds the key and is stored: this call sent again;
--   ('duplicate', holder, NULL) a job holds the key: store nothing (its ttl restarted when
--                              p_extend);
--   ('exists', NULL, NULL)     the job's id exists in the queue: nothing changed.
CREATE FUNCTION {s}.deduplicate(
    p_queue text, p_key text, p_id text, p_created_at double precision, p_now double precision,
    p_ttl double precision, p_extend boolean, p_replace boolean
) RETURNS TABLE (decision text, holder text, replaced text) LANGUAGE plpgsql AS $$
DECLARE
    v_holder text;
    v_expires double precision;
    v_status text;
    v_created double precision;
    v_held boolean;
BEGIN
    LOOP
        INSERT INTO {s}.dedup (queue, id, job_id, expires_at) VALUES (p_queue, p_key, p_id, p_now + p_ttl)
        ON CONFLICT (queue, id) DO NOTHING;
        IF FOUND THEN  -- a new key: the job's, unless its id is taken
            IF EXISTS (SELECT 1 FROM {s}.jobs AS j WHERE j.queue = p_queue AND j.id = p_id) THEN
                DELETE FROM {s}.dedup AS d WHERE d.queue = p_queue AND d.id = p_key;
                RETURN QUERY SELECT 'exists', NULL::text, NULL::text;
            ELSE
                RETURN QUERY SELECT 'store', p_id, NULL::text;
            END IF;
            RETURN;
        END IF;
        SELECT d.job_id, d.expires_at INTO v_holder, v_expires
        FROM {s}.dedup AS d WHERE d.queue = p_queue AND d.id = p_key FOR UPDATE;
        EXIT WHEN FOUND;  -- else deleted meanwhile: insert it again
    END LOOP;
    SELECT j.status, j.created_at INTO v_status, v_created
    FROM {s}.jobs AS j WHERE j.queue = p_queue AND j.id = v_holder;
    IF v_holder = p_id AND v_created = p_created_at THEN
        RETURN QUERY SELECT 'again', p_id, NULL::text;
        RETURN;
    END IF;
    v_held := CASE WHEN v_expires IS NOT NULL THEN v_expires > p_now
        ELSE v_status IN ('waiting', 'delayed', 'active') END;
    IF v_held AND p_replace AND v_status = 'delayed' THEN
        IF p_id <> v_holder
                AND EXISTS (SELECT 1 FROM {s}.jobs AS j WHERE j.queue = p_queue AND j.id = p_id) THEN
            RETURN QUERY SELECT 'exists', NULL::text, NULL::text;
            RETURN;
        END IF;
        DELETE FROM {s}.jobs AS j WHERE j.queue = p_queue AND j.id = v_holder AND j.status = 'delayed';
        IF FOUND THEN  -- else promoted meanwhile: no longer replaceable
            PERFORM {s}.wake_result_waiters(ARRAY[p_queue], ARRAY[v_holder]);
            UPDATE {s}.dedup AS d SET job_id = p_id, expires_at =
                CASE WHEN v_expires IS NOT NULL AND NOT p_extend THEN v_expires ELSE p_now + p_ttl END
            WHERE d.queue = p_queue AND d.id = p_key;
            RETURN QUERY SELECT 'store', p_id, v_holder;
            RETURN;
        END IF;
    END IF;
    IF v_held THEN
        IF p_extend AND p_ttl IS NOT NULL THEN
            UPDATE {s}.dedup AS d SET expires_at = p_now + p_ttl WHERE d.queue = p_queue AND d.id = p_key;
        END IF;
        RETURN QUERY SELECT 'duplicate', v_holder, NULL::text;
        RETURN;
    END IF;
    IF EXISTS (SELECT 1 FROM {s}.jobs AS j WHERE j.queue = p_queue AND j.id = p_id) THEN
        RETURN QUERY SELECT 'exists', NULL::text, NULL::text;
        RETURN;
    END IF;
    UPDATE {s}.dedup AS d SET job_id = p_id, expires_at = p_now + p_ttl
    WHERE d.queue = p_queue AND d.id = p_key;
    RETURN QUERY SELECT 'store', p_id, NULL::text;
END $$;
"""

# A job's parents and children (`asyncmq.dependencies`): NULL for a job with neither.
_V5 = """
ALTER TABLE {s}.jobs ADD COLUMN deps jsonb;
"""


# Dependencies (`asyncmq.dependencies`). A child is stored `blocked` (a status the check now
# allows, listed by `jobs_blocked`). Its enqueue is one transaction of the backend's: the
# parents' rows are locked (`FOR UPDATE`, in key order), the child resolved against them and
# appended to each pending parent's `deps.children`, then inserted. A statement that ends a
# parent waits for that lock, and its UPDATE then re-reads the row with the child on it; an
# enqueue that comes second reads the parent's end. Either way no child is missed.
#
# Every statement that ends jobs (finish, a transition, stall recovery, `fail_unreadable`)
# passes those with children (`deps ? 'children'`: a job without any is not looked at) to
# `parents_ended` in the same statement, after its own totals. A function rather than a row
# trigger, so that it returns the jobs it failed: the statement hands them back to the backend,
# which emits their `job:failed` (a trigger would have to leave them in a table). Its UPDATEs
# fire the statement trigger of `jobs` like any other: counts move from `blocked`, and a
# released job's NOTIFY (`w:`/`d:`) wakes workers or the scheduler; it takes a new `seq` (back
# in line) and counts its failures in `failed` itself. Each child is locked before it is read,
# so two parents of one child ending at once apply one after the other. A blocked job holds
# its deduplication key like any unfinished one.
_V6 = """
ALTER TABLE {s}.jobs DROP CONSTRAINT jobs_status_check;
ALTER TABLE {s}.jobs ADD CONSTRAINT jobs_status_check CHECK (status IN
    ('waiting', 'delayed', 'active', 'completed', 'failed', 'expired', 'cancelled', 'blocked'));
CREATE INDEX jobs_blocked ON {s}.jobs (queue, seq) WHERE status = 'blocked';

-- Applies the end of each job of p_ended (objects: queue, id, status, result, children) to its
-- children blocked on it, and that of each child it fails to the child's own children; returns
-- the children it failed.
CREATE FUNCTION {s}.parents_ended(p_ended jsonb, p_now double precision)
RETURNS SETOF {s}.jobs LANGUAGE plpgsql AS $$
DECLARE
    v_todo jsonb := p_ended;
    v_i integer := 0;
    v_parent jsonb;
    v_ref text;
    v_status text;
    v_child {s}.jobs;
    v_deps jsonb;
    v_queues text[];
    v_ids text[];
    v_statuses text[];
    v_all_deps jsonb[];
    v_errors jsonb[];
    v_failed {s}.jobs;
BEGIN
    WHILE v_i < jsonb_array_length(v_todo) LOOP
        v_parent := v_todo -> v_i;
        v_i := v_i + 1;
        v_ref := (v_parent ->> 'queue') || '/' || (v_parent ->> 'id');
        v_status := v_parent ->> 'status';
        v_queues := '{{}}'; v_ids := '{{}}'; v_statuses := '{{}}'; v_all_deps := '{{}}'; v_errors := '{{}}';
        FOR v_child IN
            SELECT c.* FROM {s}.jobs AS c
            JOIN jsonb_array_elements_text(v_parent -> 'children') AS r(ref)
                ON c.queue = split_part(r.ref, '/', 1)
                AND c.id = substr(r.ref, length(split_part(r.ref, '/', 1)) + 2)
            WHERE c.status = 'blocked' AND c.deps -> 'pending' ? v_ref
            ORDER BY c.queue, c.id
            FOR UPDATE OF c
        LOOP
            v_deps := v_child.deps;
            IF v_status <> 'completed' AND v_deps ->> 'policy' = 'wait' THEN
                CONTINUE;
            END IF;
            v_queues := v_queues || v_child.queue;
            v_ids := v_ids || v_child.id;
            IF v_status <> 'completed' AND v_deps ->> 'policy' = 'fail' THEN
                v_statuses := v_statuses || 'failed'::text;
                v_all_deps := v_all_deps || v_deps;
                v_errors := v_errors || jsonb_build_object('type', 'ParentFailedError', 'message',
                    format('parent job %s of queue ''%s'' ended %s', v_parent ->> 'id', v_parent ->> 'queue',
                        v_status));
                CONTINUE;
            END IF;
            v_deps := jsonb_set(v_deps, '{{pending}}', coalesce((
                SELECT jsonb_agg(p) FROM jsonb_array_elements(v_deps -> 'pending') AS p
                WHERE p <> to_jsonb(v_ref)
            ), '[]'::jsonb));
            IF v_status = 'completed' THEN
                v_deps := jsonb_set(v_deps, ARRAY['results', v_parent ->> 'id'],
                    coalesce(v_parent -> 'result', 'null'::jsonb));
            END IF;
            v_statuses := v_statuses || CASE
                WHEN jsonb_array_length(v_deps -> 'pending') > 0 THEN 'blocked'
                WHEN v_child.delay_until > p_now THEN 'delayed'
                ELSE 'waiting' END;
            v_all_deps := v_all_deps || v_deps;
            v_errors := v_errors || NULL::jsonb;
        END LOOP;
        CONTINUE WHEN cardinality(v_ids) = 0;
        -- Totals first, as every statement: then the UPDATE, whose trigger moves `counts`.
        INSERT INTO {s}.totals AS t (queue, task, total, shard, n)
        SELECT c.queue, c.task, 'failed', pg_backend_pid() % 16, count(*)
        FROM unnest(v_queues, v_ids, v_statuses) AS u(queue, id, status)
        JOIN {s}.jobs AS c ON c.queue = u.queue AND c.id = u.id
        WHERE u.status = 'failed'
        GROUP BY 1, 2 ORDER BY 1, 2
        ON CONFLICT (queue, task, total, shard) DO UPDATE SET n = t.n + EXCLUDED.n;
        FOR v_failed IN
            UPDATE {s}.jobs AS c
            SET status = u.status, deps = u.deps, token = c.token + 1,
                error = CASE WHEN u.status = 'failed' THEN u.error ELSE c.error END,
                finished_at = CASE WHEN u.status = 'failed' THEN p_now ELSE c.finished_at END,
                ready_at = CASE WHEN u.status = 'waiting' THEN p_now ELSE c.ready_at END,
                seq = CASE WHEN u.status = 'waiting' THEN nextval('{s}.jobs_seq') ELSE c.seq END
            FROM unnest(v_queues, v_ids, v_statuses, v_all_deps, v_errors)
                AS u(queue, id, status, deps, error)
            WHERE c.queue = u.queue AND c.id = u.id  -- locked above: still blocked
            RETURNING c.*
        LOOP
            IF v_failed.status = 'failed' THEN
                RETURN NEXT v_failed;
                PERFORM {s}.wake_result_waiters(ARRAY[v_failed.queue], ARRAY[v_failed.id]);
                IF v_failed.deps ? 'children' THEN
                    v_todo := v_todo || jsonb_build_array(jsonb_build_object(
                        'queue', v_failed.queue, 'id', v_failed.id, 'status', 'failed',
                        'children', v_failed.deps -> 'children'));
                END IF;
            END IF;
        END LOOP;
    END LOOP;
END $$;

-- As in version 4, but a job holds its key while it is not finished: `blocked` too.
CREATE OR REPLACE FUNCTION {s}.deduplicate(
    p_queue text, p_key text, p_id text, p_created_at double precision, p_now double precision,
    p_ttl double precision, p_extend boolean, p_replace boolean
) RETURNS TABLE (decision text, holder text, replaced text) LANGUAGE plpgsql AS $$
DECLARE
    v_holder text;
    v_expires double precision;
    v_status text;
    v_created double precision;
    v_held boolean;
BEGIN
    LOOP
        INSERT INTO {s}.dedup (queue, id, job_id, expires_at) VALUES (p_queue, p_key, p_id, p_now + p_ttl)
        ON CONFLICT (queue, id) DO NOTHING;
        IF FOUND THEN  -- a new key: the job's, unless its id is taken
            IF EXISTS (SELECT 1 FROM {s}.jobs AS j WHERE j.queue = p_queue AND j.id = p_id) THEN
                DELETE FROM {s}.dedup AS d WHERE d.queue = p_queue AND d.id = p_key;
                RETURN QUERY SELECT 'exists', NULL::text, NULL::text;
            ELSE
                RETURN QUERY SELECT 'store', p_id, NULL::text;
            END IF;
            RETURN;
        END IF;
        SELECT d.job_id, d.expires_at INTO v_holder, v_expires
        FROM {s}.dedup AS d WHERE d.queue = p_queue AND d.id = p_key FOR UPDATE;
        EXIT WHEN FOUND;  -- else deleted meanwhile: insert it again
    END LOOP;
    SELECT j.status, j.created_at INTO v_status, v_created
    FROM {s}.jobs AS j WHERE j.queue = p_queue AND j.id = v_holder;
    IF v_holder = p_id AND v_created = p_created_at THEN
        RETURN QUERY SELECT 'again', p_id, NULL::text;
        RETURN;
    END IF;
    v_held := CASE WHEN v_expires IS NOT NULL THEN v_expires > p_now
        ELSE v_status NOT IN ('completed', 'failed', 'expired', 'cancelled') END;
    IF v_held AND p_replace AND v_status = 'delayed' THEN
        IF p_id <> v_holder
                AND EXISTS (SELECT 1 FROM {s}.jobs AS j WHERE j.queue = p_queue AND j.id = p_id) THEN
            RETURN QUERY SELECT 'exists', NULL::text, NULL::text;
            RETURN;
        END IF;
        DELETE FROM {s}.jobs AS j WHERE j.queue = p_queue AND j.id = v_holder AND j.status = 'delayed';
        IF FOUND THEN  -- else promoted meanwhile: no longer replaceable
            PERFORM {s}.wake_result_waiters(ARRAY[p_queue], ARRAY[v_holder]);
            UPDATE {s}.dedup AS d SET job_id = p_id, expires_at =
                CASE WHEN v_expires IS NOT NULL AND NOT p_extend THEN v_expires ELSE p_now + p_ttl END
            WHERE d.queue = p_queue AND d.id = p_key;
            RETURN QUERY SELECT 'store', p_id, v_holder;
            RETURN;
        END IF;
    END IF;
    IF v_held THEN
        IF p_extend AND p_ttl IS NOT NULL THEN
            UPDATE {s}.dedup AS d SET expires_at = p_now + p_ttl WHERE d.queue = p_queue AND d.id = p_key;
        END IF;
        RETURN QUERY SELECT 'duplicate', v_holder, NULL::text;
        RETURN;
    END IF;
    IF EXISTS (SELECT 1 FROM {s}.jobs AS j WHERE j.queue = p_queue AND j.id = p_id) THEN
        RETURN QUERY SELECT 'exists', NULL::text, NULL::text;
        RETURN;
    END IF;
    UPDATE {s}.dedup AS d SET job_id = p_id, expires_at = p_now + p_ttl
    WHERE d.queue = p_queue AND d.id = p_key;
    RETURN QUERY SELECT 'store', p_id, NULL::text;
END $$;
"""

# Deduplication in the queue totals (`asyncmq.transitions`): `deduplicate` takes the job's task
# and counts, under the key's row lock and in the statement that decides it, a duplicate in
# `deduplicated` and a delayed holder deleted for the job in `debounced` (the job itself is
# counted in `enqueued` by the insert that follows, in the same transaction: a job that cannot
# be stored then rolls both back). The delete and its count are one statement, totals before
# the jobs trigger's `counts`, as every statement. A new function beside version 6's (an
# overload by its arguments), which stays for a process still running the code before this
# version: its deduplicated adds are then not counted.
_V7 = """
-- As in version 6, with the job's task p_task, and the totals `deduplicated` and `debounced`.
CREATE FUNCTION {s}.deduplicate(
    p_queue text, p_key text, p_id text, p_task text, p_created_at double precision,
    p_now double precision, p_ttl double precision, p_extend boolean, p_replace boolean
) RETURNS TABLE (decision text, holder text, replaced text) LANGUAGE plpgsql AS $$
DECLARE
    v_holder text;
    v_expires double precision;
    v_status text;
    v_created double precision;
    v_held boolean;
    v_gone bigint;
BEGIN
    LOOP
        INSERT INTO {s}.dedup (queue, id, job_id, expires_at) VALUES (p_queue, p_key, p_id, p_now + p_ttl)
        ON CONFLICT (queue, id) DO NOTHING;
        IF FOUND THEN  -- a new key: the job's, unless its id is taken
            IF EXISTS (SELECT 1 FROM {s}.jobs AS j WHERE j.queue = p_queue AND j.id = p_id) THEN
                DELETE FROM {s}.dedup AS d WHERE d.queue = p_queue AND d.id = p_key;
                RETURN QUERY SELECT 'exists', NULL::text, NULL::text;
            ELSE
                RETURN QUERY SELECT 'store', p_id, NULL::text;
            END IF;
            RETURN;
        END IF;
        SELECT d.job_id, d.expires_at INTO v_holder, v_expires
        FROM {s}.dedup AS d WHERE d.queue = p_queue AND d.id = p_key FOR UPDATE;
        EXIT WHEN FOUND;  -- else deleted meanwhile: insert it again
    END LOOP;
    SELECT j.status, j.created_at INTO v_status, v_created
    FROM {s}.jobs AS j WHERE j.queue = p_queue AND j.id = v_holder;
    IF v_holder = p_id AND v_created = p_created_at THEN
        RETURN QUERY SELECT 'again', p_id, NULL::text;
        RETURN;
    END IF;
    v_held := CASE WHEN v_expires IS NOT NULL THEN v_expires > p_now
        ELSE v_status NOT IN ('completed', 'failed', 'expired', 'cancelled') END;
    IF v_held AND p_replace AND v_status = 'delayed' THEN
        IF p_id <> v_holder
                AND EXISTS (SELECT 1 FROM {s}.jobs AS j WHERE j.queue = p_queue AND j.id = p_id) THEN
            RETURN QUERY SELECT 'exists', NULL::text, NULL::text;
            RETURN;
        END IF;
        WITH gone AS (
            DELETE FROM {s}.jobs AS j WHERE j.queue = p_queue AND j.id = v_holder AND j.status = 'delayed'
            RETURNING 1
        ), counted AS (
            INSERT INTO {s}.totals AS t (queue, task, total, shard, n)
            SELECT p_queue, p_task, 'debounced', pg_backend_pid() % 16, count(*) FROM gone HAVING count(*) > 0
            ON CONFLICT (queue, task, total, shard) DO UPDATE SET n = t.n + EXCLUDED.n
        )
        SELECT count(*) INTO v_gone FROM gone;
        IF v_gone > 0 THEN  -- else promoted meanwhile: no longer replaceable
            PERFORM {s}.wake_result_waiters(ARRAY[p_queue], ARRAY[v_holder]);
            UPDATE {s}.dedup AS d SET job_id = p_id, expires_at =
                CASE WHEN v_expires IS NOT NULL AND NOT p_extend THEN v_expires ELSE p_now + p_ttl END
            WHERE d.queue = p_queue AND d.id = p_key;
            RETURN QUERY SELECT 'store', p_id, v_holder;
            RETURN;
        END IF;
    END IF;
    IF v_held THEN
        IF p_extend AND p_ttl IS NOT NULL THEN
            UPDATE {s}.dedup AS d SET expires_at = p_now + p_ttl WHERE d.queue = p_queue AND d.id = p_key;
        END IF;
        INSERT INTO {s}.totals AS t (queue, task, total, shard, n)
        VALUES (p_queue, p_task, 'deduplicated', pg_backend_pid() % 16, 1)
        ON CONFLICT (queue, task, total, shard) DO UPDATE SET n = t.n + 1;
        RETURN QUERY SELECT 'duplicate', v_holder, NULL::text;
        RETURN;
    END IF;
    IF EXISTS (SELECT 1 FROM {s}.jobs AS j WHERE j.queue = p_queue AND j.id = p_id) THEN
        RETURN QUERY SELECT 'exists', NULL::text, NULL::text;
        RETURN;
    END IF;
    UPDATE {s}.dedup AS d SET job_id = p_id, expires_at = p_now + p_ttl
    WHERE d.queue = p_queue AND d.id = p_key;
    RETURN QUERY SELECT 'store', p_id, NULL::text;
END $$;
"""

# A parent removed before it ended (`remove_job`, `drain`, a debounce replacing it) acts on its
# blocked children in the statement that deletes it (`asyncmq.dependencies.parent_removed`):
# the statement passes it to `parents_ended` with the status 'removed', which the function
# treats as an end without completing, wording a failed child's error "was removed". Version
# 6's function is replaced in place (same arguments and result): a process of the code before
# never passes 'removed', so it sees no change. `deduplicate` (version 7's) returns the
# replaced holder's children as a fourth column, which the code before does not read.
_V8 = """
-- As in version 6; a job of p_ended whose status is 'removed' fails its children as a parent
-- that "was removed".
CREATE OR REPLACE FUNCTION {s}.parents_ended(p_ended jsonb, p_now double precision)
RETURNS SETOF {s}.jobs LANGUAGE plpgsql AS $$
DECLARE
    v_todo jsonb := p_ended;
    v_i integer := 0;
    v_parent jsonb;
    v_ref text;
    v_status text;
    v_child {s}.jobs;
    v_deps jsonb;
    v_queues text[];
    v_ids text[];
    v_statuses text[];
    v_all_deps jsonb[];
    v_errors jsonb[];
    v_failed {s}.jobs;
BEGIN
    WHILE v_i < jsonb_array_length(v_todo) LOOP
        v_parent := v_todo -> v_i;
        v_i := v_i + 1;
        v_ref := (v_parent ->> 'queue') || '/' || (v_parent ->> 'id');
        v_status := v_parent ->> 'status';
        v_queues := '{{}}'; v_ids := '{{}}'; v_statuses := '{{}}'; v_all_deps := '{{}}'; v_errors := '{{}}';
        FOR v_child IN
            SELECT c.* FROM {s}.jobs AS c
            JOIN jsonb_array_elements_text(v_parent -> 'children') AS r(ref)
                ON c.queue = split_part(r.ref, '/', 1)
                AND c.id = substr(r.ref, length(split_part(r.ref, '/', 1)) + 2)
            WHERE c.status = 'blocked' AND c.deps -> 'pending' ? v_ref
            ORDER BY c.queue, c.id
            FOR UPDATE OF c
        LOOP
            v_deps := v_child.deps;
            IF v_status <> 'completed' AND v_deps ->> 'policy' = 'wait' THEN
                CONTINUE;
            END IF;
            v_queues := v_queues || v_child.queue;
            v_ids := v_ids || v_child.id;
            IF v_status <> 'completed' AND v_deps ->> 'policy' = 'fail' THEN
                v_statuses := v_statuses || 'failed'::text;
                v_all_deps := v_all_deps || v_deps;
                v_errors := v_errors || jsonb_build_object('type', 'ParentFailedError', 'message',
                    format('parent job %s of queue ''%s'' %s', v_parent ->> 'id', v_parent ->> 'queue',
                        CASE WHEN v_status = 'removed' THEN 'was removed' ELSE 'ended ' || v_status END));
                CONTINUE;
            END IF;
            v_deps := jsonb_set(v_deps, '{{pending}}', coalesce((
                SELECT jsonb_agg(p) FROM jsonb_array_elements(v_deps -> 'pending') AS p
                WHERE p <> to_jsonb(v_ref)
            ), '[]'::jsonb));
            IF v_status = 'completed' THEN
                v_deps := jsonb_set(v_deps, ARRAY['results', v_parent ->> 'id'],
                    coalesce(v_parent -> 'result', 'null'::jsonb));
            END IF;
            v_statuses := v_statuses || CASE
                WHEN jsonb_array_length(v_deps -> 'pending') > 0 THEN 'blocked'
                WHEN v_child.delay_until > p_now THEN 'delayed'
                ELSE 'waiting' END;
            v_all_deps := v_all_deps || v_deps;
            v_errors := v_errors || NULL::jsonb;
        END LOOP;
        CONTINUE WHEN cardinality(v_ids) = 0;
        -- Totals first, as every statement: then the UPDATE, whose trigger moves `counts`.
        INSERT INTO {s}.totals AS t (queue, task, total, shard, n)
        SELECT c.queue, c.task, 'failed', pg_backend_pid() % 16, count(*)
        FROM unnest(v_queues, v_ids, v_statuses) AS u(queue, id, status)
        JOIN {s}.jobs AS c ON c.queue = u.queue AND c.id = u.id
        WHERE u.status = 'failed'
        GROUP BY 1, 2 ORDER BY 1, 2
        ON CONFLICT (queue, task, total, shard) DO UPDATE SET n = t.n + EXCLUDED.n;
        FOR v_failed IN
            UPDATE {s}.jobs AS c
            SET status = u.status, deps = u.deps, token = c.token + 1,
                error = CASE WHEN u.status = 'failed' THEN u.error ELSE c.error END,
                finished_at = CASE WHEN u.status = 'failed' THEN p_now ELSE c.finished_at END,
                ready_at = CASE WHEN u.status = 'waiting' THEN p_now ELSE c.ready_at END,
                seq = CASE WHEN u.status = 'waiting' THEN nextval('{s}.jobs_seq') ELSE c.seq END
            FROM unnest(v_queues, v_ids, v_statuses, v_all_deps, v_errors)
                AS u(queue, id, status, deps, error)
            WHERE c.queue = u.queue AND c.id = u.id  -- locked above: still blocked
            RETURNING c.*
        LOOP
            IF v_failed.status = 'failed' THEN
                RETURN NEXT v_failed;
                PERFORM {s}.wake_result_waiters(ARRAY[v_failed.queue], ARRAY[v_failed.id]);
                IF v_failed.deps ? 'children' THEN
                    v_todo := v_todo || jsonb_build_array(jsonb_build_object(
                        'queue', v_failed.queue, 'id', v_failed.id, 'status', 'failed',
                        'children', v_failed.deps -> 'children'));
                END IF;
            END IF;
        END LOOP;
    END LOOP;
END $$;

-- As in version 7, and a replaced holder's children (its deps' `children`, NULL for none),
-- which the caller tells of the removal in the same transaction.
DROP FUNCTION {s}.deduplicate(text, text, text, text, double precision, double precision, double precision,
    boolean, boolean);
CREATE FUNCTION {s}.deduplicate(
    p_queue text, p_key text, p_id text, p_task text, p_created_at double precision,
    p_now double precision, p_ttl double precision, p_extend boolean, p_replace boolean
) RETURNS TABLE (decision text, holder text, replaced text, children jsonb) LANGUAGE plpgsql AS $$
DECLARE
    v_holder text;
    v_expires double precision;
    v_status text;
    v_created double precision;
    v_held boolean;
    v_gone bigint;
    v_children jsonb;
BEGIN
    LOOP
        INSERT INTO {s}.dedup (queue, id, job_id, expires_at) VALUES (p_queue, p_key, p_id, p_now + p_ttl)
        ON CONFLICT (queue, id) DO NOTHING;
        IF FOUND THEN  -- a new key: the job's, unless its id is taken
            IF EXISTS (SELECT 1 FROM {s}.jobs AS j WHERE j.queue = p_queue AND j.id = p_id) THEN
                DELETE FROM {s}.dedup AS d WHERE d.queue = p_queue AND d.id = p_key;
                RETURN QUERY SELECT 'exists', NULL::text, NULL::text, NULL::jsonb;
            ELSE
                RETURN QUERY SELECT 'store', p_id, NULL::text, NULL::jsonb;
            END IF;
            RETURN;
        END IF;
        SELECT d.job_id, d.expires_at INTO v_holder, v_expires
        FROM {s}.dedup AS d WHERE d.queue = p_queue AND d.id = p_key FOR UPDATE;
        EXIT WHEN FOUND;  -- else deleted meanwhile: insert it again
    END LOOP;
    SELECT j.status, j.created_at INTO v_status, v_created
    FROM {s}.jobs AS j WHERE j.queue = p_queue AND j.id = v_holder;
    IF v_holder = p_id AND v_created = p_created_at THEN
        RETURN QUERY SELECT 'again', p_id, NULL::text, NULL::jsonb;
        RETURN;
    END IF;
    v_held := CASE WHEN v_expires IS NOT NULL THEN v_expires > p_now
        ELSE v_status NOT IN ('completed', 'failed', 'expired', 'cancelled') END;
    IF v_held AND p_replace AND v_status = 'delayed' THEN
        IF p_id <> v_holder
                AND EXISTS (SELECT 1 FROM {s}.jobs AS j WHERE j.queue = p_queue AND j.id = p_id) THEN
            RETURN QUERY SELECT 'exists', NULL::text, NULL::text, NULL::jsonb;
            RETURN;
        END IF;
        WITH gone AS (
            DELETE FROM {s}.jobs AS j WHERE j.queue = p_queue AND j.id = v_holder AND j.status = 'delayed'
            RETURNING CASE WHEN jsonb_typeof(j.deps) = 'object' THEN j.deps -> 'children' END AS children
        ), counted AS (
            INSERT INTO {s}.totals AS t (queue, task, total, shard, n)
            SELECT p_queue, p_task, 'debounced', pg_backend_pid() % 16, count(*) FROM gone HAVING count(*) > 0
            ON CONFLICT (queue, task, total, shard) DO UPDATE SET n = t.n + EXCLUDED.n
        )
        SELECT count(*), (array_agg(gone.children))[1] INTO v_gone, v_children FROM gone;
        IF v_gone > 0 THEN  -- else promoted meanwhile: no longer replaceable
            PERFORM {s}.wake_result_waiters(ARRAY[p_queue], ARRAY[v_holder]);
            UPDATE {s}.dedup AS d SET job_id = p_id, expires_at =
                CASE WHEN v_expires IS NOT NULL AND NOT p_extend THEN v_expires ELSE p_now + p_ttl END
            WHERE d.queue = p_queue AND d.id = p_key;
            RETURN QUERY SELECT 'store', p_id, v_holder, v_children;
            RETURN;
        END IF;
    END IF;
    IF v_held THEN
        IF p_extend AND p_ttl IS NOT NULL THEN
            UPDATE {s}.dedup AS d SET expires_at = p_now + p_ttl WHERE d.queue = p_queue AND d.id = p_key;
        END IF;
        INSERT INTO {s}.totals AS t (queue, task, total, shard, n)
        VALUES (p_queue, p_task, 'deduplicated', pg_backend_pid() % 16, 1)
        ON CONFLICT (queue, task, total, shard) DO UPDATE SET n = t.n + 1;
        RETURN QUERY SELECT 'duplicate', v_holder, NULL::text, NULL::jsonb;
        RETURN;
    END IF;
    IF EXISTS (SELECT 1 FROM {s}.jobs AS j WHERE j.queue = p_queue AND j.id = p_id) THEN
        RETURN QUERY SELECT 'exists', NULL::text, NULL::text, NULL::jsonb;
        RETURN;
    END IF;
    UPDATE {s}.dedup AS d SET job_id = p_id, expires_at = p_now + p_ttl
    WHERE d.queue = p_queue AND d.id = p_key;
    RETURN QUERY SELECT 'store', p_id, NULL::text, NULL::jsonb;
END $$;
"""

#: (version, statements). Append only; never edit one that has shipped.
MIGRATIONS: Sequence[tuple[int, str]] = (
    (1, _V1),
    (2, _V2),
    (3, _V3),
    (4, _V4),
    (5, _V5),
    (6, _V6),
    (7, _V7),
    (8, _V8),
)
LATEST = MIGRATIONS[-1][0]


async def applied_version(conn: asyncpg.Connection, schema: str) -> int:
    """The schema's version; 0 when asyncmq's tables are not there yet."""
    exists = await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", f"{schema}.schema_version")
    if not exists:
        return 0
    version = await conn.fetchval(f"SELECT max(version) FROM {schema}.schema_version")
    return int(version or 0)


async def migrate(conn: asyncpg.Connection, schema: str) -> list[int]:
    """Apply every migration the schema lacks, in one transaction each; return their versions.
    Refuses a schema newer than this code knows."""
    schema = schema_name(schema)
    applied: list[int] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_ID)
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        await conn.execute(
            f"CREATE TABLE IF NOT EXISTS {schema}.schema_version "
            "(version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        current = await applied_version(conn, schema)
        check_known(current, schema)
        for version, statements in MIGRATIONS:
            if version > current:
                await conn.execute(statements.format(s=schema, channel=channel(schema)))
                await conn.execute(f"INSERT INTO {schema}.schema_version (version) VALUES ($1)", version)
                applied.append(version)
    return applied


def check_known(version: int, schema: str) -> None:
    if version > LATEST:
        raise ConfigurationError(
            f"the PostgreSQL schema {schema!r} is at version {version}, newer than this asyncmq knows "
            f"({LATEST}): upgrade asyncmq"
        )
