"""Forwards lifecycle events to the backend, so processes other than the emitter can follow
them (`asyncmq events tail QUEUE`).

Events stay process-local unless a publisher runs: publishing costs a few microseconds
per event, which a worker at tens of thousands of jobs per second should not pay unasked.
Events are gathered and written in one backend call per batch, at most every
`flush_every_s`, so a busy worker makes a few calls per second for them, not one per event.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from asyncmq.core.event import Event, Payload
from asyncmq.core.seam import event_emitter
from asyncmq.logging import get_logger

if TYPE_CHECKING:
    from asyncmq.backends.base import BaseBackend

__all__ = ["EventPublisher"]

log = get_logger(__name__)


class EventPublisher:
    def __init__(
        self, backend: BaseBackend, *, flush_every_s: float = 0.05, max_pending: int = 10_000
    ) -> None:
        self.backend = backend
        self.flush_every_s = flush_every_s
        self.max_pending = max_pending
        self._pending: list[tuple[str, Payload]] = []
        self._listeners: dict[Event, Any] = {}
        self._flusher: asyncio.Task[None] | None = None

    def start(self) -> None:
        for event in Event:
            listener = self._listener(event.value)
            self._listeners[event] = listener
            event_emitter.on(event, listener)

    async def stop(self) -> None:
        for event, listener in self._listeners.items():
            event_emitter.off(event, listener)
        self._listeners.clear()
        if self._flusher is not None:
            await self._flusher
        await self._flush()

    def _listener(self, name: str) -> Any:
        def publish(payload: Payload) -> None:
            if "queue" not in payload:
                return
            if len(self._pending) >= self.max_pending:
                return  # the backend cannot keep up: shed (as the stream's cap would), never block a job
            self._pending.append((name, payload))
            if self._flusher is None or self._flusher.done():
                self._flusher = asyncio.get_running_loop().create_task(self._flush_soon())

        return publish

    async def _flush_soon(self) -> None:
        await asyncio.sleep(self.flush_every_s)
        await self._flush()

    async def _flush(self) -> None:
        batch, self._pending = self._pending, []
        if not batch:
            return
        try:
            await self.backend.publish_events(batch)
        except Exception:
            log.exception("publishing %d events failed; they are dropped", len(batch))
