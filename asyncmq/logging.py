"""The package logger. Every module logs through a child of it (`asyncmq.worker`, ...)."""

from __future__ import annotations

import logging

__all__ = ["get_logger", "logger"]

logger = logging.getLogger("asyncmq")


def get_logger(name: str) -> logging.Logger:
    """A child of the package logger, so one `logging` setting controls all of asyncmq."""
    return logger.getChild(name.removeprefix("asyncmq."))
