"""A fast lane for the backend's Lua scripts on a single Redis server.

Every state transition of a job is a script call, so the client's cost per call bounds a
worker's and a producer's speed. redis-py spends more CPU per command in its pool, retry
wrapper, stream reader and reply callbacks than the socket work itself takes. The lane
keeps connections of its own: an asyncio protocol that writes RESP it packs itself and
feeds what arrives straight to hiredis' parser, replies matched to callers in order.

Failures keep the client's guarantees: a dropped connection is replaced and the call
retried with exponential backoff (every script is safe to repeat: enqueue by job id, claim
by its receipt, the rest by fencing token); a server that lost its scripts gets them again.
A caller cancelled mid-call leaves its replies to be read and dropped in order, so the
connection stays usable. TLS servers use the client's own path instead of the lane.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import hiredis
from redis.exceptions import AuthenticationError, NoScriptError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError

__all__ = ["Call", "ScriptLane", "lane_settings"]

#: (sha, script text, key, args) of one script call.
Call = tuple[str, Any, str, Sequence[Any]]

_DROPPED = (RedisConnectionError, ConnectionError, OSError)


def lane_settings(connection_class_name: str, kwargs: dict[str, Any]) -> dict[str, Any] | None:
    """What the lane needs to connect like the client does, or None where it cannot (TLS)."""
    if connection_class_name not in ("Connection", "UnixDomainSocketConnection"):
        return None
    wanted = ("host", "port", "path", "db", "username", "password", "client_name")
    return {name: kwargs[name] for name in wanted if kwargs.get(name) is not None}


class _Protocol(asyncio.Protocol):
    """One connection: replies are handed to waiters in the order the commands were sent."""

    def __init__(self) -> None:
        self._parser = hiredis.Reader(encoding="utf-8", replyError=ResponseError)
        self._waiters: deque[asyncio.Future[Any]] = deque()
        self._transport: asyncio.Transport | None = None
        self.lost: Exception | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # uvloop's is no asyncio.Transport

    def data_received(self, data: bytes) -> None:
        self._parser.feed(data)
        while (reply := self._parser.gets()) is not False:
            waiter = self._waiters.popleft()
            if not waiter.done():  # a cancelled caller's reply is read and dropped
                waiter.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = RedisConnectionError(f"connection to Redis lost: {exc or 'closed by the server'}")
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(self.lost)

    def send(self, data: bytes, replies: int) -> list[asyncio.Future[Any]]:
        if self.lost is not None or self._transport is None:
            raise self.lost or RedisConnectionError("not connected")
        loop = asyncio.get_running_loop()
        waiters = [loop.create_future() for _ in range(replies)]
        self._waiters.extend(waiters)
        self._transport.write(data)
        return waiters

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


class ScriptLane:
    def __init__(self, settings: dict[str, Any], max_connections: int, retries: int) -> None:
        self._settings = settings
        self._idle: list[_Protocol] = []
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
            try:
                conn = await self._checkout()
            except _DROPPED:  # the server is down or restarting: wait, as for a dropped call
                failures = await self._backoff(failures)
                continue
            try:
                replies = await self._exchange(conn, pending)
            except NoScriptError:
                self._checkin(conn)
                pending = self._everything(pending, sent)
                await self._load(pending)
                continue
            except _DROPPED:
                self._discard(conn)
                failures = await self._backoff(failures)
                pending = self._everything(pending, sent)
                continue
            except ResponseError as exc:
                self._checkin(conn)
                if not str(exc).startswith("LOADING"):
                    raise
                failures = await self._backoff(failures)  # a restarted server reading its data
                pending = self._everything(pending, sent)
                continue
            except BaseException:
                self._checkin(conn)  # replies still due are read and dropped in order
                raise
            self._checkin(conn)
            return replies

    async def _backoff(self, failures: int) -> int:
        """Sleep before the next try, or re-raise once the tries are spent."""
        failures += 1
        if failures > self.retries:
            raise
        await asyncio.sleep(min(0.05 * 2**failures, 2.0))
        return failures

    @staticmethod
    def _everything(pending: Iterable[Call], sent: list[Call]) -> list[Call]:
        """Every call, to send again: drawing the rest of `pending` records it in `sent`."""
        for _ in pending:
            pass
        return list(sent)

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            self._discard(conn)

    async def _exchange(self, conn: _Protocol, calls: Iterable[Call]) -> list[Any]:
        waiters = []
        for sha, _, key, args in calls:
            waiters += conn.send(_pack_evalsha(sha, key, args), 1)
        replies = [await waiter for waiter in waiters]
        errors = [reply for reply in replies if isinstance(reply, ResponseError)]
        if errors:
            first = str(errors[0])
            raise NoScriptError(first) if first.startswith("NOSCRIPT") else errors[0]
        return replies

    async def _load(self, calls: Sequence[Call]) -> None:
        conn = await self._checkout()
        try:
            for reply in [
                await w for w in conn.send(b"".join(_pack("SCRIPT", "LOAD", c[1]) for c in calls), len(calls))
            ]:
                if isinstance(reply, ResponseError):
                    raise reply
        finally:
            self._checkin(conn)

    async def _checkout(self) -> _Protocol:
        while self._idle:
            conn = self._idle.pop()
            if conn.lost is None:
                return conn
            self._open -= 1
        self._open += 1
        try:
            return await self._connect()
        except BaseException:
            self._open -= 1
            raise

    async def _connect(self) -> _Protocol:
        loop, settings = asyncio.get_running_loop(), self._settings
        if "path" in settings:
            _, conn = await loop.create_unix_connection(_Protocol, settings["path"])
        else:
            _, conn = await loop.create_connection(_Protocol, settings["host"], settings["port"])
        setup = []
        if "password" in settings:
            setup.append(_pack("AUTH", *[v for v in (settings.get("username"), settings["password"]) if v]))
        if settings.get("db"):
            setup.append(_pack("SELECT", settings["db"]))
        if "client_name" in settings:
            setup.append(_pack("CLIENT", "SETNAME", settings["client_name"]))
        if setup:
            replies = [await w for w in conn.send(b"".join(setup), len(setup))]
            for index, reply in enumerate(replies):
                if isinstance(reply, ResponseError):
                    conn.close()
                    if index == 0 and "password" in settings:  # as redis-py says a refused login
                        raise AuthenticationError(str(reply))
                    raise reply
        return conn

    def _checkin(self, conn: _Protocol) -> None:
        if conn.lost is None:
            self._idle.append(conn)
        else:
            self._open -= 1

    def _discard(self, conn: _Protocol) -> None:
        self._open -= 1
        conn.close()


def _remember(calls: Iterable[Call], sent: list[Call]) -> Iterator[Call]:
    for call in calls:
        sent.append(call)
        yield call


def _bulk(value: Any) -> bytes:
    data = value if isinstance(value, bytes) else str(value).encode()
    return b"$%d\r\n%s\r\n" % (len(data), data)


def _pack(*parts: Any) -> bytes:
    return b"*%d\r\n" % len(parts) + b"".join(_bulk(part) for part in parts)


def _pack_evalsha(sha: str, key: str, args: Sequence[Any]) -> bytes:
    """RESP for `EVALSHA sha 1 key args...`."""
    head = b"*%d\r\n$7\r\nEVALSHA\r\n%s$1\r\n1\r\n%s" % (4 + len(args), _bulk(sha), _bulk(key))
    return head + b"".join(_bulk(arg) for arg in args)
