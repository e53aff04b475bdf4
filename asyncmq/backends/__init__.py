"""Storage backends, chosen by instance or by URL. Each imports its driver only when chosen."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from asyncmq.errors import ConfigurationError

if TYPE_CHECKING:
    from asyncmq.backends.base import BaseBackend

__all__ = ["backend_from_url"]

_SCHEMES = {
    "memory": "memory://",
    "redis": "redis://host:6379/0, rediss:// (TLS), redis+cluster://host:7000",
    "postgres": "postgresql://user@host:5432/db (?schema=NAME)",
    "mongodb": "mongodb://host:27017/db, mongodb+srv://...",
}


def backend_from_url(url: str) -> BaseBackend:
    """Build a backend from its URL, importing only that backend's driver."""
    scheme = urlsplit(url).scheme
    if scheme == "memory":
        from asyncmq.backends.memory import InMemoryBackend

        return InMemoryBackend()
    if scheme in ("redis", "rediss", "redis+cluster", "rediss+cluster", "unix"):
        from asyncmq.backends.redis import redis_backend_from_url

        return redis_backend_from_url(url)
    if scheme in ("postgresql", "postgres"):
        from asyncmq.backends.postgres import postgres_backend_from_url

        return postgres_backend_from_url(url)
    if scheme in ("mongodb", "mongodb+srv"):
        from asyncmq.backends.mongo import mongo_backend_from_url

        return mongo_backend_from_url(url)
    from asyncmq.backends.base import redacted_url

    known = ", ".join(_SCHEMES.values())
    raise ConfigurationError(f"unsupported backend URL {redacted_url(url)!r}: known schemes are {known}")
