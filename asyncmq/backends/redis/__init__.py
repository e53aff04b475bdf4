"""The Redis backend (`pip install 'asyncmq[redis]'`): `RedisBackend("redis://localhost:6379/0")`."""

from __future__ import annotations

from asyncmq.backends.redis.backend import RedisBackend, redis_backend_from_url

__all__ = ["RedisBackend", "redis_backend_from_url"]
