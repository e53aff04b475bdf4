"""Fixtures of the MongoDB backend's own tests (the behaviours every backend shares are in
tests/conformance/). Each test gets a database of its own, dropped afterwards."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from pymongo import AsyncMongoClient
from pymongo.errors import PyMongoError

from asyncmq.backends.mongo import MongoBackend

MakeBackend = Callable[..., Awaitable[MongoBackend]]


@pytest.fixture
def mongo_url() -> str:
    return os.environ.get("ASYNCMQ_TEST_MONGO_URL", "mongodb://127.0.0.1:27017/?directConnection=true")


@pytest.fixture
def database() -> str:
    return f"asyncmq_t_{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def client(mongo_url: str, database: str) -> AsyncIterator[AsyncMongoClient[Any]]:
    """A plain client to look at the test's database with; the database is dropped with it."""
    connection: AsyncMongoClient[Any] = AsyncMongoClient(mongo_url, serverSelectionTimeoutMS=3000)
    try:
        await connection.admin.command("ping")
    except PyMongoError as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"no MongoDB server at {mongo_url}: {exc}")
    yield connection
    await connection.drop_database(database)
    await connection.close()


@pytest.fixture
async def make_backend(
    mongo_url: str, database: str, client: AsyncMongoClient[Any]
) -> AsyncIterator[MakeBackend]:
    """`await make_backend(**options)`: a connected backend on the test's database, closed after."""
    built: list[MongoBackend] = []

    async def make(**options: Any) -> MongoBackend:
        backend = MongoBackend(options.pop("uri_or_client", mongo_url), database=database, **options)
        built.append(backend)
        await backend.connect()
        return backend

    yield make
    for backend in built:
        await backend.close()


@pytest.fixture
async def backend(make_backend: MakeBackend) -> MongoBackend:
    return await make_backend()
