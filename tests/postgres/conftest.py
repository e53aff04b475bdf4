"""Fixtures of the PostgreSQL backend's own tests (the behaviours every backend shares are in
tests/conformance/). Each test gets a schema of its own, dropped afterwards, and a raw
asyncpg connection to look at it with."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import pytest

from asyncmq.backends.postgres import PostgresBackend

MakeBackend = Callable[..., Awaitable[PostgresBackend]]


@pytest.fixture
def postgres_url() -> str:
    return os.environ.get("ASYNCMQ_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture
def schema() -> str:
    return f"asyncmq_t_{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def conn(postgres_url: str, schema: str) -> AsyncIterator[asyncpg.Connection]:
    """A plain connection (no JSON codec: what a caller's own connection is like); the test's
    schema is dropped with it."""
    try:
        connection = await asyncpg.connect(postgres_url)
    except (OSError, asyncpg.PostgresError) as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"no PostgreSQL at {postgres_url}: {exc}")
    yield connection
    await connection.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    await connection.close()


@pytest.fixture
async def make_backend(
    postgres_url: str, schema: str, conn: asyncpg.Connection
) -> AsyncIterator[MakeBackend]:
    """`await make_backend(**options)`: a connected backend on the test's schema, closed after."""
    built: list[PostgresBackend] = []

    async def make(**options: Any) -> PostgresBackend:
        backend = PostgresBackend(options.pop("dsn", postgres_url), schema=schema, **options)
        built.append(backend)
        await backend.connect()
        return backend

    yield make
    for backend in built:
        await backend.close()


@pytest.fixture
async def backend(make_backend: MakeBackend) -> PostgresBackend:
    return await make_backend()
