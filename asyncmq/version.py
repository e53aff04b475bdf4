"""The package's version, apart from `asyncmq/__init__` so that any layer can read it."""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
