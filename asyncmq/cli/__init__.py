"""The `asyncmq` command line; the entry point is `asyncmq.cli.main:cli`."""

from __future__ import annotations

__all__: list[str] = []
