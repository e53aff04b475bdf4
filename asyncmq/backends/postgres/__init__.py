"""The PostgreSQL backend (`pip install 'asyncmq[postgres]'`)."""

from __future__ import annotations

from asyncmq.backends.postgres.backend import PostgresBackend, postgres_backend_from_url

__all__ = ["PostgresBackend", "postgres_backend_from_url"]
