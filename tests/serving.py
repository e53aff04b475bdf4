"""A test's own HTTP server, answering from a thread while the test runs."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import HTTPServer
from typing import TypeVar

__all__ = ["serving"]

S = TypeVar("S", bound=HTTPServer)


@contextmanager
def serving(server: S) -> Iterator[S]:
    """`server` answering from a thread of its own while inside; shut down and closed after."""
    thread = threading.Thread(target=server.serve_forever, name=type(server).__name__)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
