"""Storage backends, chosen by instance or by URL. Each imports its driver only when chosen."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from asyncmq.errors import ConfigurationError

if TYPE_CHECKING:
    from asyncmq.backends.base import BaseBackend

__all__ = ["backend_from_url"]

_SCHEMES = {"memory": "memory://"}


def backend_from_url(url: str) -> BaseBackend:
    """`memory://` today; each backend added registers its scheme here."""
    scheme = urlsplit(url).scheme
    if scheme == "memory":
        from asyncmq.backends.memory import InMemoryBackend

        return InMemoryBackend()
    known = ", ".join(_SCHEMES.values())
    raise ConfigurationError(f"unsupported backend URL {url!r}: known schemes are {known}")
