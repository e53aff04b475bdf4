"""Wake-ups for the MongoDB backend: change streams where the server offers them, else an
adaptive poll.

Waiters wait on keys: `w:<queue>` (workers), `d:<queue>` (schedulers), `e:<queue>` (event
readers). A change stream per watched collection, opened at the first wait that needs it,
wakes the keys its changes name: an update of a queue's flags document (the backend bumps
it when jobs become ready or schedules change) wakes `w:` and `d:`, an inserted event
`e:`. A stream that breaks is opened again in the background, and every waiter is woken to
look again (what changed meanwhile was not seen).

A standalone server has no change streams. Then a wait sleeps instead: briefly after its
key was `worked` (a claim found jobs: more may come soon), twice as long after each wait
that followed none, up to `poll_max_s`, so an idle worker looks at most a few times a second.
Changes made in this process wake its own waiters at once in either mode (`wake`).

A job's end, `r:<queue>/<id>`, wakes the `Queue.result` waiters in `watches` (each its own
event). Their stream, on the jobs, asks the server only for jobs entering a final state or
deleted, and is open only while this process has a waiter: it costs nothing otherwise.
Without change streams they poll slowly themselves (`asyncmq.results`).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Any

from asyncmq.backends.base import wait_set
from asyncmq.logging import get_logger

__all__ = ["Waker"]

log = get_logger(__name__)

_REOPEN_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0)
_FIRST_POLL_S = 0.02
#: MongoDB holds an empty `getMore` of a change stream for up to its await time (1 s); an empty
#: answer quicker than `_HELD_S` comes from a server that does not hold them (the test server),
#: and the next ask waits `_UNHELD_PAUSE_S` rather than keep that server busy.
_HELD_S = 0.05
_UNHELD_PAUSE_S = 0.01
#: How long `close` waits for a stream whose last waiter left to stop by itself (a held read
#: returns within its await time, 1 s).
_STOP_WAIT_S = 2.0
#: What a standalone server answers to a change stream (`$changeStream` needs a replica set).
_NO_CHANGE_STREAMS = (40573, 40324, 136)

#: From a changed document's id, the keys to wake (`None` when the change wakes nobody).
KeysOf = Callable[[Any], tuple[str, ...] | None]
#: The changes a stream asks for by default: inserts and updates.
_INSERTS_AND_UPDATES: list[dict[str, Any]] = [
    {"$match": {"operationType": {"$in": ["insert", "update", "replace"]}}}
]


class Waker:
    def __init__(
        self,
        streams: dict[str, tuple[Any, KeysOf]],
        *,
        change_streams: bool | None,
        poll_max_s: float,
        pipelines: dict[str, list[dict[str, Any]]] | None = None,
    ):
        #: Key prefix ("w", "d", "e", "r") -> (the collection to watch, how its changes name keys).
        self._streams = streams
        #: Key prefix -> the changes its stream asks for, if not inserts and updates.
        self._pipelines = pipelines or {}
        #: `r:<queue>/<id>` -> the events of the waiters of that job's end.
        self.watches: dict[str, set[asyncio.Event]] = {}
        #: `None`: find out at the first wait; `False`: poll.
        self.change_streams = change_streams
        self.poll_max_s = poll_max_s
        self._events: dict[str, asyncio.Event] = {}
        self._watching: dict[str, asyncio.Task[None]] = {}  # by collection name
        self._stopping: set[asyncio.Task[None]] = set()  # told to stop: no waiter left
        self._poll_s: dict[str, float] = {}
        self._closed = False

    def wake(self, key: str) -> None:
        if key.startswith("r:"):  # a job's end: only its waiters, none kept for later
            for watch in self.watches.get(key, ()):
                watch.set()
            return
        event = self._events.get(key)
        if event is None:
            event = self._events[key] = asyncio.Event()
        event.set()

    def worked(self, key: str) -> None:
        """The key's last look found work: the next poll comes soon."""
        self._poll_s.pop(key, None)

    async def wait(self, key: str, timeout_s: float) -> None:
        """Until `key` is woken (or was, since the last wait ended), or `timeout_s`. The wait
        that opens a change stream returns at once: a change made before the stream began is
        not in it, so the caller looks again."""
        event = self._events.get(key)
        if event is None:
            event = self._events[key] = asyncio.Event()
        if self.change_streams is not False and await self._watch(key):
            return
        if self.change_streams is False:
            timeout_s = min(timeout_s, self._poll_s.get(key, _FIRST_POLL_S))
            self._poll_s[key] = min(timeout_s * 2, self.poll_max_s)
        await wait_set(event, timeout_s)

    async def watch(self, key: str, event: asyncio.Event) -> None:
        """Wake `event` at the end of the job `key` names (`r:<queue>/<id>`), from now on: the
        stream that reports it is open when this returns (when the server has them)."""
        self.watches.setdefault(key, set()).add(event)
        if self.change_streams is not False:
            await self._watch(key)

    def unwatch(self, key: str, event: asyncio.Event) -> None:
        events = self.watches.get(key)
        if events is not None:
            events.discard(event)
            if not events:
                del self.watches[key]
        if not self.watches and "r" in self._streams:  # the last waiter: the jobs' stream closes
            collection = self._streams["r"][0]
            following = self._watching.pop(collection.name, None)
            if following is not None:  # it stops at its next answer (not cancelled mid-read,
                self._stopping.add(following)  # which would drop its connection unclosed)
                following.add_done_callback(self._stopping.discard)

    async def _watch(self, key: str) -> bool:
        """Open the change stream that serves `key` if it is not open; True if this call opened it."""
        prefix = key.split(":", 1)[0]
        collection, keys_of = self._streams[prefix]
        if collection.name in self._watching:
            return False
        try:
            stream = await _open(collection, self._pipelines.get(prefix, _INSERTS_AND_UPDATES))
            if collection.name in self._watching:  # another wait opened it meanwhile
                closing = stream.close()
                if inspect.isawaitable(closing):
                    await closing
                return True
        except Exception as exc:
            if _unsupported(exc):
                log.info("MongoDB offers no change streams here (%s): polling for new jobs", exc)
                self.change_streams = False
                return False
            raise
        self.change_streams = True
        self._watching[collection.name] = asyncio.get_running_loop().create_task(
            self._follow(collection, stream, keys_of, self._pipelines.get(prefix, _INSERTS_AND_UPDATES))
        )
        return True

    async def _follow(
        self, collection: Any, stream: Any, keys_of: KeysOf, pipeline: list[dict[str, Any]]
    ) -> None:
        loop = asyncio.get_running_loop()
        me = asyncio.current_task()
        attempt = 0

        def running() -> bool:
            return not self._closed and me not in self._stopping

        while True:
            try:
                async with stream:
                    while running():
                        asked = loop.time()
                        change = await stream.try_next()
                        if change is None:
                            if loop.time() - asked < _HELD_S:  # not held: do not ask again at once
                                await asyncio.sleep(_UNHELD_PAUSE_S)
                            continue
                        attempt = 0
                        for key in keys_of(change.get("documentKey", {}).get("_id")) or ():
                            self.wake(key)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "the MongoDB change stream on %s broke (%s); opening it again", collection.name, exc
                )
            if not running():
                return
            self._wake_all()  # look again: changes made meanwhile were missed
            while True:
                await asyncio.sleep(_REOPEN_S[min(attempt, len(_REOPEN_S) - 1)])
                attempt += 1
                if not running():
                    return
                try:
                    stream = await _open(collection, pipeline)
                    break
                except Exception as exc:
                    log.warning("reopening the MongoDB change stream failed (%s)", exc)

    def _wake_all(self) -> None:
        for event in self._events.values():
            event.set()
        for watches in self.watches.values():
            for watch in watches:
                watch.set()

    async def close(self) -> None:
        self._closed = True
        tasks = list(self._watching.values())
        self._watching.clear()
        for task in tasks:
            task.cancel()
        if self._stopping:  # streams whose last waiter left stop at their next answer
            await asyncio.wait(set(self._stopping), timeout=_STOP_WAIT_S)
        for task in self._stopping:
            task.cancel()
            tasks.append(task)
        await asyncio.gather(*tasks, return_exceptions=True)


async def _open(collection: Any, pipeline: list[dict[str, Any]]) -> Any:
    """A change stream of the changes `pipeline` matches, through PyMongo's async API or Motor
    (whose `watch` is not a coroutine). Only the document key is used: the id says the queue."""
    stream = collection.watch(pipeline)
    if inspect.isawaitable(stream):
        return await stream
    await stream.try_next()  # Motor opens a stream at its first read; a change read here is
    return stream  # not lost: the waiter this open serves looks again anyway


def _unsupported(exc: Exception) -> bool:
    code = getattr(exc, "code", None)
    return code in _NO_CHANGE_STREAMS or "replica set" in str(exc) or "changeStream" in str(exc)
