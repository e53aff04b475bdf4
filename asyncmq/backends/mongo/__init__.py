"""The MongoDB backend (`pip install 'asyncmq[mongo]'`): `MongoBackend("mongodb://localhost:27017")`."""

from __future__ import annotations

from asyncmq.backends.mongo.backend import MongoBackend, mongo_backend_from_url

__all__ = ["MongoBackend", "mongo_backend_from_url"]
