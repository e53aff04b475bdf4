"""A producer whose connections the server closed (`pg_terminate_backend`) while it was idle
goes on without an error. Workers under killed connections, a restarting server and SIGKILL
are in the fault-injection suite (tests/faults), on a private cluster."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg

from asyncmq.queues import Queue
from asyncmq.tasks import task
from tests.postgres.conftest import MakeBackend


@task
async def counted(n: int) -> int:
    return n


def _named(url: str, name: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}application_name={name}"


async def _terminate(conn: asyncpg.Connection, name: str) -> int:
    killed: int = await conn.fetchval(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1", name
    )
    return killed


async def test_a_producer_whose_idle_connections_were_killed_goes_on_without_an_error(
    make_backend: MakeBackend, postgres_url: str, conn: asyncpg.Connection
) -> None:
    name = f"asyncmq-fault-{uuid.uuid4().hex[:8]}"
    queue = Queue("faults", backend=await make_backend(dsn=_named(postgres_url, name)))
    first = await queue.add(counted.name, (1,))  # on the connection the backend keeps out
    for n in range(2, 5):
        assert await _terminate(conn, name)
        await asyncio.sleep(0.05)  # the kill reaches the client while it is idle
        await queue.add(counted.name, (n,))  # nothing was sent on the dead one: sent again

    assert (await queue.counts())["waiting"] == 4
    assert await queue.get_job(first) is not None
