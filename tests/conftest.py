"""Shared fixtures: every test starts from default settings and leaves no listener behind."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from asyncmq.conf import configure
from asyncmq.core.event import Event, event_emitter


@pytest.fixture(autouse=True)
def _fresh_settings_and_listeners(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("ASYNCMQ_SETTINGS_MODULE", "ASYNCMQ_BACKEND", "ASYNCMQ_SCAN_INTERVAL"):
        monkeypatch.delenv(name, raising=False)
    configure(None)
    before = {event: list(event_emitter._listeners[event]) for event in Event}
    yield
    for event in Event:
        event_emitter._listeners[event][:] = before[event]
    configure(None)
