"""The schema: created and brought up to date once, checked on connect, never downgraded, and
a database that cannot be reached is one clear error."""

from __future__ import annotations

import time

import asyncpg
import pytest

from asyncmq.backends.postgres import PostgresBackend
from asyncmq.backends.postgres import schema as pg_schema
from asyncmq.errors import ConfigurationError
from asyncmq.job import JobState
from asyncmq.queues import Queue
from tests.cli.helpers import invoke
from tests.conformance.support import noop
from tests.postgres.conftest import MakeBackend


async def test_migrating_twice_applies_each_migration_once(conn: asyncpg.Connection, schema: str) -> None:
    assert await pg_schema.migrate(conn, schema) == [version for version, _ in pg_schema.MIGRATIONS]
    assert await pg_schema.migrate(conn, schema) == []
    assert await pg_schema.applied_version(conn, schema) == pg_schema.LATEST


async def test_a_version_1_schema_with_jobs_migrates_and_then_keeps_totals_and_counts(
    make_backend: MakeBackend, conn: asyncpg.Connection, schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as only_v1:
        only_v1.setattr(pg_schema, "MIGRATIONS", pg_schema.MIGRATIONS[:1])
        assert await pg_schema.migrate(conn, schema) == [1]
    now = time.time()
    await conn.execute(  # three jobs as version 1 stored them, counted by their own statement
        f"""
        WITH added AS (
            INSERT INTO {schema}.jobs (queue, id, task, status, priority, created_at, ready_at)
            SELECT 'q', id, $1, 'waiting', 0, $2, $2 FROM unnest(ARRAY['a', 'b', 'c']) AS id
        )
        INSERT INTO {schema}.counts (queue, status, shard, n) VALUES ('q', 'waiting', 0, 3)
        """,
        noop.name,
        now,
    )
    await conn.execute(f"SELECT * FROM {schema}.claim('q', 1, 'w0', $1, $2, 0, 1.0)", now + 3600, now)

    queue = Queue("q", backend=await make_backend())
    assert await pg_schema.applied_version(conn, schema) == pg_schema.LATEST
    assert (await queue.stats()).totals == {}  # what happened before is not known
    assert await queue.worker().process() is True
    assert await queue.worker().process() is True
    (held,) = await queue.list_jobs(JobState.ACTIVE)  # claimed under version 1
    assert await queue.cancel(held.id) is True

    stats = await queue.stats()
    assert stats.totals == {noop.name: {"claimed": 2, "completed": 2, "cancelled": 1}}
    assert {state: n for state, n in stats.counts.items() if n} == {"completed": 2, "cancelled": 1}


async def test_a_version_6_schema_with_keys_migrates_and_then_counts_duplicates_and_debounces(
    make_backend: MakeBackend, conn: asyncpg.Connection, schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as only_v6:
        only_v6.setattr(pg_schema, "MIGRATIONS", pg_schema.MIGRATIONS[:6])
        assert await pg_schema.migrate(conn, schema) == [1, 2, 3, 4, 5, 6]
    now = time.time()
    await conn.execute(  # a waiting and a delayed job holding their keys, as version 6 stored them
        f"""
        WITH added AS (
            INSERT INTO {schema}.jobs (queue, id, task, status, priority, created_at, delay_until, ready_at)
            VALUES ('q', 'held', $1, 'waiting', 0, $2, NULL, $2),
                ('q', 'later', $1, 'delayed', 0, $2, $2 + 600, NULL)
        ), keys AS (
            INSERT INTO {schema}.dedup (queue, id, job_id) VALUES ('q', 'k', 'held'), ('q', 'd', 'later')
        )
        INSERT INTO {schema}.counts (queue, status, shard, n)
        VALUES ('q', 'waiting', 0, 1), ('q', 'delayed', 0, 1)
        """,
        noop.name,
        now,
    )

    queue = Queue("q", backend=await make_backend())
    assert await pg_schema.applied_version(conn, schema) == pg_schema.LATEST
    assert await queue.add(noop.name, deduplication={"id": "k"}) == "held"
    replacing = await queue.add(noop.name, delay=600, debounce={"id": "d", "replace": True})
    assert replacing != "later"

    stats = await queue.stats()
    assert stats.totals == {noop.name: {"enqueued": 1, "deduplicated": 1, "debounced": 1}}
    assert {state: n for state, n in stats.counts.items() if n} == {"waiting": 1, "delayed": 1}
    # Version 6's function stays for a process still running the code before version 7: it
    # decides as it did, counting nothing.
    decided = await conn.fetchval(
        f"SELECT decision FROM {schema}.deduplicate('q', 'k', 'x', $1, $1, NULL, false, false)", now
    )
    assert decided == "duplicate"
    assert (await queue.stats()).totals == stats.totals


async def test_a_version_7_schema_with_a_blocked_child_migrates_and_then_fails_it_when_its_parent_goes(
    make_backend: MakeBackend, conn: asyncpg.Connection, schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as only_v7:
        only_v7.setattr(pg_schema, "MIGRATIONS", pg_schema.MIGRATIONS[:7])
        assert await pg_schema.migrate(conn, schema) == [1, 2, 3, 4, 5, 6, 7]
    now = time.time()
    await conn.execute(  # a waiting parent and its blocked child, as version 7 stored them
        f"""
        WITH added AS (
            INSERT INTO {schema}.jobs (queue, id, task, status, priority, created_at, ready_at, deps)
            VALUES ('q', 'p', $1, 'waiting', 0, $2, $2, '{{"children": ["q/c"]}}'),
                ('q', 'c', $1, 'blocked', 0, $2, NULL,
                    '{{"parents": ["q/p"], "pending": ["q/p"], "policy": "fail", "results": {{}}}}')
        )
        INSERT INTO {schema}.counts (queue, status, shard, n)
        VALUES ('q', 'waiting', 0, 1), ('q', 'blocked', 0, 1)
        """,
        noop.name,
        now,
    )

    queue = Queue("q", backend=await make_backend())
    assert await pg_schema.applied_version(conn, schema) == pg_schema.LATEST
    # The code before version 8 reads three of `deduplicate`'s columns: they are still there.
    decided = await conn.fetch(
        f"SELECT decision, holder, replaced FROM {schema}.deduplicate('q', 'k', 'x', $1, $2, $2, NULL, "
        "false, false)",
        noop.name,
        now,
    )
    assert [tuple(row) for row in decided] == [("store", "x", None)]
    assert await queue.remove_job("p") is True
    failed = await queue.get_job("c")
    assert failed.status is JobState.FAILED
    assert failed.error == {"type": "ParentFailedError", "message": "parent job p of queue 'q' was removed"}
    assert {state: n for state, n in (await queue.stats()).counts.items() if n} == {"failed": 1}


async def test_a_backend_that_may_not_migrate_names_the_command_that_does(make_backend: MakeBackend) -> None:
    with pytest.raises(ConfigurationError, match=r"is at version 0, this asyncmq needs .*asyncmq db migrate"):
        await make_backend(migrate=False)


async def test_a_schema_newer_than_this_asyncmq_is_refused(
    make_backend: MakeBackend, conn: asyncpg.Connection, schema: str
) -> None:
    await pg_schema.migrate(conn, schema)
    await conn.execute(f"INSERT INTO {schema}.schema_version (version) VALUES (999)")
    with pytest.raises(ConfigurationError, match="is at version 999, newer than this asyncmq knows"):
        await make_backend()


async def test_an_unreachable_database_is_one_clear_error(make_backend: MakeBackend) -> None:
    with pytest.raises(
        ConfigurationError, match=r"cannot connect to PostgreSQL at postgresql://u:\*\*\*@127\.0\.0\.1:1/x"
    ):
        await make_backend(dsn="postgresql://u:secret@127.0.0.1:1/x")


def test_the_cli_says_in_one_line_when_the_login_is_refused(postgres_url: str) -> None:
    refused = postgres_url.replace("postgres@", "no_such_role@", 1)
    done = invoke("queue", "list", "--backend", refused)
    assert done.exit_code == 5  # the backend refused the login
    assert done.stderr.strip().count("\n") == 0, done.stderr
    assert "cannot connect to PostgreSQL" in done.stderr
    assert "no_such_role" in done.stderr


def test_db_migrate_check_fails_until_migrate_has_run(postgres_url: str, schema: str, conn: object) -> None:
    url = f"{postgres_url}?schema={schema}"
    check = invoke("db", "migrate", "--check", "--backend", url)
    assert check.exit_code == 1
    assert "run `asyncmq db migrate`" in check.stderr
    migrated = invoke("db", "migrate", "--backend", url)
    assert migrated.exit_code == 0
    assert f"to {pg_schema.LATEST}" in migrated.stdout
    assert invoke("db", "migrate", "--check", "--backend", url).exit_code == 0


def test_the_backend_refuses_a_bad_schema_name() -> None:
    with pytest.raises(ConfigurationError, match="invalid PostgreSQL schema name 'drop table'"):
        PostgresBackend("postgresql://x@127.0.0.1/x", schema="drop table")
