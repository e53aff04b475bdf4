"""A fast lane for the backend's Lua scripts on a single Redis server.

redis-py spends more client CPU per command on its pool checkout, retry wrapper and reply
callbacks than on the socket work itself: a script call through the client costs about 70%
more than the same call written and read on a connection directly. Every state transition
of a job is a script call, so the lane keeps connections of its own and speaks to them
directly, with the same connection settings (TLS, password, database) as the client.

Failures keep the client's guarantees: a dropped connection is replaced and the call
retried with exponential backoff (every script is safe to repeat: enqueue by job id, the
rest by fencing token); a cancelled call discards its connection, whose reply would
otherwise be read by the next caller; a server that lost its scripts gets them again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from redis.asyncio.connection import AbstractConnection as Connection
from redis.asyncio.connection import ConnectionPool
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

__all__ = ["Call", "ScriptLane"]

#: (sha, script text, key, args) of one script call.
Call = tuple[str, Any, str, Sequence[Any]]

_DROPPED = (RedisConnectionError, RedisTimeoutError, ConnectionResetError, OSError)


class ScriptLane:
    def __init__(self, pool: ConnectionPool, max_connections: int, retries: int) -> None:
        self._pool = pool
        self._idle: list[Connection] = []
        self._open = 0
        self.max_connections = max_connections
        self.retries = retries

    @property
    def has_room(self) -> bool:
        """False when every lane connection is busy: callers then use the client's pool."""
        return bool(self._idle) or self._open < self.max_connections

    async def call(self, calls: Iterable[Call]) -> list[Any]:
        """Send every call, then read every reply: one round trip however many calls. Each
        call is sent as soon as `calls` yields it, so a lazy iterable lets the server run the
        first while the caller still encodes the next."""
        failures = 0
        sent: list[Call] = []  # what a retry sends again
        pending: Iterable[Call] = _remember(calls, sent)
        while True:
            conn = await self._checkout()
            try:
                replies = await self._exchange(conn, pending)
            except NoScriptError:
                self._checkin(conn)
                pending = self._everything(pending, sent)
                await self._load(pending)
                continue
            except _DROPPED:
                await self._discard(conn)
                failures += 1
                if failures > self.retries:
                    raise
                await asyncio.sleep(min(0.05 * 2**failures, 2.0))
                pending = self._everything(pending, sent)
                continue
            except ResponseError:  # the script raised: the connection itself is fine
                self._checkin(conn)
                raise
            except BaseException:
                await self._discard(conn)  # a reply may still be on its way: never reuse it
                raise
            self._checkin(conn)
            return replies

    @staticmethod
    def _everything(pending: Iterable[Call], sent: list[Call]) -> list[Call]:
        """Every call, to send again: drawing the rest of `pending` records it in `sent`."""
        for _ in pending:
            pass
        return list(sent)

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            await conn.disconnect()
        self._open -= len(idle)

    async def _exchange(self, conn: Connection, calls: Iterable[Call]) -> list[Any]:
        count = 0
        for sha, _, key, args in calls:
            await conn.send_packed_command(_pack_evalsha(sha, key, args), check_health=count == 0)
            count += 1
        replies = []
        error: Exception | None = None
        for _ in range(count):  # read them all, so the connection stays in step
            try:
                replies.append(await conn.read_response())
            except ResponseError as exc:  # an error reply: keep reading, raise the first
                error = error or exc
        if error is not None:
            raise error
        return replies

    async def _load(self, calls: Sequence[Call]) -> None:
        conn = await self._checkout()
        try:
            for _, text, _, _ in calls:
                await conn.send_command("SCRIPT", "LOAD", text)
                await conn.read_response()
        except BaseException:
            await self._discard(conn)
            raise
        self._checkin(conn)

    async def _checkout(self) -> Connection:
        if self._idle:
            return self._idle.pop()
        conn = self._pool.connection_class(**self._pool.connection_kwargs)
        self._open += 1
        try:
            await conn.connect()  # type: ignore[no-untyped-call]
        except BaseException:
            self._open -= 1
            raise
        return conn

    def _checkin(self, conn: Connection) -> None:
        self._idle.append(conn)

    async def _discard(self, conn: Connection) -> None:
        self._open -= 1
        with contextlib.suppress(Exception):  # already broken: nothing left to close
            await conn.disconnect()


def _bulk(value: Any) -> bytes:
    data = value if isinstance(value, bytes) else str(value).encode()
    return b"$%d\r\n%s\r\n" % (len(data), data)


def _pack_evalsha(sha: str, key: str, args: Sequence[Any]) -> bytes:
    """RESP for `EVALSHA sha 1 key args...`: a few args, so packing here is several times
    cheaper than redis-py's general packer."""
    head = b"*%d\r\n$7\r\nEVALSHA\r\n%s$1\r\n1\r\n%s" % (4 + len(args), _bulk(sha), _bulk(key))
    return head + b"".join(_bulk(arg) for arg in args)


def _remember(calls: Iterable[Call], sent: list[Call]) -> Iterator[Call]:
    for call in calls:
        sent.append(call)
        yield call
