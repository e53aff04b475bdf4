"""One LISTEN connection per backend, opened at its first wait (a process that only adds
jobs has none): NOTIFY wakes the waiters of a key (`w:<queue>` for workers, `d:<queue>` for
schedulers, `e:<queue>` for event readers) within milliseconds. A job's end, `r:<queue>/<id>`,
wakes the `Queue.result` waiters in `watches` (each its own event: several may wait for one
job); one that nobody here waits for is dropped, never kept.

The connection is its own, outside the pool (a pooled one would be handed to a query). When
it drops, it is opened again in the background, and every waiter is woken: a notification
sent while nobody listened is lost, so each waiter looks again (the catch-up query).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import asyncpg

from asyncmq.backends.base import wait_set
from asyncmq.logging import get_logger

__all__ = ["Listener"]

log = get_logger(__name__)

_RECONNECT_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0)


class Listener:
    def __init__(self, dsn: str | None, pool: asyncpg.Pool, channel: str) -> None:
        self._dsn = dsn
        self._pool = pool
        self.channel = channel
        self._events: dict[str, asyncio.Event] = {}
        #: `r:<queue>/<id>` -> the events of the waiters of that job's end.
        self.watches: dict[str, set[asyncio.Event]] = {}
        self._conn: asyncpg.Connection | None = None
        self._reconnecting: asyncio.Task[None] | None = None
        self._closed = False

    async def start(self) -> None:
        self._conn = await self._open()

    async def _open(self) -> asyncpg.Connection:
        if self._dsn is not None:
            conn = await asyncpg.connect(self._dsn)
        else:  # a pool handed in, no address known: one of its connections listens
            conn = await self._pool.acquire()
        try:
            await conn.add_listener(self.channel, self._notified)
        except BaseException:  # dropped (or cancelled) before it listened: not left open
            await self._let_go(conn)
            raise
        conn.add_termination_listener(self._lost)
        return conn

    async def _let_go(self, conn: asyncpg.Connection) -> None:
        """Give the connection back or close it; one that cannot close in time (a loaded
        server, a dead socket) is terminated, never left for the garbage collector."""
        try:
            if self._dsn is None:
                await self._pool.release(conn)  # a pool's connection goes back clean
            else:
                await conn.close(timeout=2)
        except Exception:
            conn.terminate()

    def _notified(self, conn: Any, pid: int, channel: str, payload: str) -> None:
        if payload.startswith("r:"):
            for watch in self.watches.get(payload, ()):
                watch.set()
            return
        event = self._events.get(payload)
        if event is None:  # nobody waits yet: kept, so the first wait does not miss it
            event = self._events[payload] = asyncio.Event()
        event.set()

    def _lost(self, conn: Any) -> None:
        if self._closed or (self._reconnecting is not None and not self._reconnecting.done()):
            return
        log.warning("the LISTEN connection to PostgreSQL dropped; opening it again")
        self._conn = None
        self._reconnecting = asyncio.get_running_loop().create_task(self._reconnect())

    async def _reconnect(self) -> None:
        attempt = 0
        while not self._closed:
            try:
                self._conn = await self._open()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                delay = _RECONNECT_S[min(attempt, len(_RECONNECT_S) - 1)]
                attempt += 1
                log.warning("LISTEN reconnect failed (%s); retrying in %.2fs", exc, delay)
                await asyncio.sleep(delay)
                continue
            for event in self._events.values():  # catch up on what was missed meanwhile
                event.set()
            for watches in self.watches.values():
                for watch in watches:
                    watch.set()
            return

    async def wait(self, key: str, timeout_s: float) -> None:
        """Until `key` is notified (or was, since the last wait ended), or `timeout_s`. A
        key's first wait returns at once: its caller looked before this LISTEN may have
        begun, and a notification sent before it is lost, so the caller looks again."""
        event = self._events.get(key)
        if event is None:
            self._events[key] = asyncio.Event()
            return
        await wait_set(event, timeout_s)

    async def stop(self) -> None:
        self._closed = True
        if self._reconnecting is not None:
            self._reconnecting.cancel()
            await asyncio.gather(self._reconnecting, return_exceptions=True)
        conn, self._conn = self._conn, None
        if conn is None:
            return
        with contextlib.suppress(Exception):
            conn.remove_termination_listener(self._lost)
            await conn.remove_listener(self.channel, self._notified)
        await self._let_go(conn)
