"""`asyncmq db`: the PostgreSQL backend's schema, migrated on purpose rather than on connect.

`migrate` applies the migrations a schema lacks (never dropping data); `--check` only says
whether any are missing (exit 1 if so), for a deploy pipeline that migrates in its own step.
"""

from __future__ import annotations

import click

from asyncmq.cli.common import backend_options, resolve_backend, run

__all__ = ["db_group"]


@click.group("db")
def db_group() -> None:
    """The PostgreSQL backend's schema."""


async def _migrate(url: str | None, check: bool) -> tuple[int, list[int], int]:
    from asyncmq.backends.postgres import PostgresBackend
    from asyncmq.backends.postgres import schema as pg_schema

    backend = resolve_backend(url)
    if not isinstance(backend, PostgresBackend):
        raise click.ClickException(
            f"`asyncmq db` works on a PostgreSQL backend, not {backend.name}: pass --backend postgresql://..."
        )
    backend.migrate = False
    pool = await backend.open_pool()
    try:
        async with pool.acquire() as conn:
            before = await pg_schema.applied_version(conn, backend.schema)
            pg_schema.check_known(before, backend.schema)
            applied = [] if check else await pg_schema.migrate(conn, backend.schema)
    finally:
        await pool.close()
    return before, applied, pg_schema.LATEST


@db_group.command("migrate")
@backend_options
@click.option("--check", is_flag=True, help="Only say whether migrations are missing (exit 1 if so).")
def migrate(backend: str | None, check: bool) -> None:
    """Bring the schema to this asyncmq's version (`?schema=NAME` in the URL picks the schema)."""
    before, applied, latest = run(_migrate(backend, check))
    if check:
        if before < latest:
            raise click.ClickException(
                f"the schema is at version {before}, this asyncmq needs {latest}: run `asyncmq db migrate`"
            )
        click.echo(f"The schema is at version {before}: up to date.")
    elif applied:
        click.echo(f"Migrated the schema from version {before} to {applied[-1]}.")
    else:
        click.echo(f"The schema is at version {before}: nothing to do.")
