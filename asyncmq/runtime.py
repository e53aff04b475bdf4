"""What the settings set up, done by the code that starts a queue, a worker or a command.

`asyncmq.conf` only reads settings. The first time a process uses a queue (or a CLI command
opens a backend), `default_backend()` builds the settings' backend from its URL, once per
settings object, and `apply_settings()` switches on the instrumentation the settings ask
for (`metrics`, `tracing`), importing `asyncmq.observability` only then.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from asyncmq.backends import backend_from_url
from asyncmq.conf import Settings, active_settings, settings

if TYPE_CHECKING:
    from asyncmq.backends.base import BaseBackend

__all__ = ["apply_settings", "default_backend"]

_lazy: Any = settings  # its `_wrapped` is the settings object in force, None before loading
_backend: tuple[Settings, BaseBackend] | None = None
_applied: Settings | None = None


def default_backend() -> BaseBackend:
    """The settings' backend, built once from its URL when given as one, then shared."""
    global _backend
    loaded = active_settings()
    if _backend is None or _backend[0] is not loaded:
        value = loaded.backend
        _backend = (loaded, backend_from_url(value) if isinstance(value, str) else value)
    return _backend[1]


def apply_settings() -> None:
    """Turn on what the settings in force ask for, once per settings object. Cheap enough to
    call on every enqueue: an identity test once done."""
    global _applied
    if _applied is not None and _applied is _lazy._wrapped:
        return
    loaded = active_settings()
    if _applied is loaded:
        return
    _applied = loaded
    if loaded.metrics or loaded.tracing:
        from asyncmq.observability import instrument_from_settings

        instrument_from_settings(loaded)
