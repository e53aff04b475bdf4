"""Every CLI test gets its own in-memory backend, installed as the settings' backend so the
CLI, invoked in this process, reads and changes the very jobs the test stored."""

from __future__ import annotations

import pytest

import tests.cli.app  # noqa: F401  (registers the tasks the workers run)
from asyncmq.backends.memory import InMemoryBackend
from asyncmq.conf import Settings, configure


@pytest.fixture
def backend() -> InMemoryBackend:
    instance = InMemoryBackend()
    configure(Settings(backend=instance))
    return instance
