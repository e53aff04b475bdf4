"""The one place where observers attach to the engine.

Lifecycle events (`events`), job hooks that act around enqueues and attempts (`hooks`),
backend round trips (`on_operation`) and failing listeners (`on_listener_error`): the engine
and the backends report to a `Seam`, and never import what subscribes to it (metrics,
tracing, user code). `seam` is the process's instance and the default everywhere;
`seam.reset()` detaches every subscriber (tests call it between cases).
"""

from __future__ import annotations

from collections.abc import Callable

from asyncmq.core.event import EventEmitter
from asyncmq.core.event import event_emitter as _process_events
from asyncmq.core.hooks import Hooks

__all__ = ["ErrorListener", "OperationListener", "Seam", "event_emitter", "hooks", "seam"]

#: Called as listener(backend_name, operation, seconds) after each backend round trip.
OperationListener = Callable[[str, str, float], None]
#: Called with the event name each time an event listener raises.
ErrorListener = Callable[[str], None]


class Seam:
    """Events, hooks, backend operations and listener errors, subscribed to in one object."""

    def __init__(self, events: EventEmitter | None = None) -> None:
        self.events = events if events is not None else EventEmitter()
        self.events.on_listener_error = self._listener_failed
        self.hooks = Hooks()
        #: Read by every backend round trip: empty means nothing is timed.
        self.operation_listeners: list[OperationListener] = []
        self._error_listeners: list[ErrorListener] = []

    def on_operation(self, listener: OperationListener) -> None:
        self.operation_listeners.append(listener)

    def off_operation(self, listener: OperationListener) -> None:
        if listener in self.operation_listeners:
            self.operation_listeners.remove(listener)

    def on_listener_error(self, listener: ErrorListener) -> None:
        self._error_listeners.append(listener)

    def off_listener_error(self, listener: ErrorListener) -> None:
        if listener in self._error_listeners:
            self._error_listeners.remove(listener)

    def operation(self, backend: str, operation: str, seconds: float) -> None:
        for listener in self.operation_listeners:
            listener(backend, operation, seconds)

    def reset(self) -> None:
        """Detach every subscriber: listeners, hooks, operation and error listeners."""
        self.events.reset()
        self.hooks.clear()
        self.operation_listeners.clear()
        self._error_listeners.clear()

    def _listener_failed(self, event: str) -> None:
        for listener in self._error_listeners:
            listener(event)


seam = Seam(_process_events)
#: The process's event emitter (`seam.events`, `asyncmq.core.event.event_emitter`).
event_emitter = seam.events
#: The process's job hooks (`seam.hooks`).
hooks = seam.hooks
