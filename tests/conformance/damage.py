"""Damage a stored job the way a hand edit or foreign code would: one field of its record
set to garbage in the backend's own storage, and the record read back raw (the backend
itself cannot read it any more). One small helper per backend."""

from __future__ import annotations

from typing import Any

import orjson

from asyncmq.backends.base import BaseBackend
from asyncmq.job import FIELD_KINDS

__all__ = ["GARBAGE", "add_unknown_field", "damage", "damage_worker", "stored_record"]

#: Not a number, not JSON, and no job state: garbage to every field that is not free text.
GARBAGE = "garbage{"
#: Where each text store keeps a job's text fields as any text: garbage there is a value.
_TYPED_COLUMNS = {name for name, kind in FIELD_KINDS.items() if kind in ("int", "float")}


async def damage(backend: BaseBackend, queue: str, job_id: str, field: str) -> bool:
    """Set `field` of the stored job to garbage; `False` where the storage cannot hold any
    (a typed or checked column, or a key of the row itself)."""
    if backend.name == "memory":
        stored = backend._stores[queue].jobs[job_id]  # type: ignore[attr-defined]
        setattr(stored, field, GARBAGE if FIELD_KINDS[field] != "str" or field == "status" else 12345)
        return True
    if backend.name == "redis":
        await backend.client.hset(backend._base(queue) + "job:" + job_id, field, GARBAGE)  # type: ignore[attr-defined]
        return True
    if backend.name == "postgres":
        if field in _TYPED_COLUMNS or field in ("id", "queue", "status"):
            return False  # typed, the row's key, or checked against the states
        value = orjson.dumps(GARBAGE).decode() if FIELD_KINDS[field] == "json" else GARBAGE
        cast = "::jsonb" if FIELD_KINDS[field] == "json" else ""
        query = f"UPDATE {backend.schema}.jobs SET {field} = $1{cast} WHERE queue = $2 AND id = $3"  # type: ignore[attr-defined]
        await backend.pool.execute(query, value, queue, job_id)  # type: ignore[attr-defined]
        return True
    if backend.name == "mongodb":
        if field == "queue":
            return False  # the queue's own index: a document of another queue
        await backend.jobs.update_one({"_id": f"{queue}/{job_id}"}, {"$set": {field: GARBAGE}})  # type: ignore[attr-defined]
        return True
    raise AssertionError(f"no damage helper for the {backend.name} backend")


async def add_unknown_field(backend: BaseBackend, queue: str, job_id: str) -> bool:
    """Give the stored job a field no job has (`colour`); `False` where the storage has no
    room for one (a slotted object, a table's columns)."""
    if backend.name == "redis":
        await backend.client.hset(backend._base(queue) + "job:" + job_id, "colour", "blue")  # type: ignore[attr-defined]
        return True
    if backend.name == "mongodb":
        await backend.jobs.update_one({"_id": f"{queue}/{job_id}"}, {"$set": {"colour": "blue"}})  # type: ignore[attr-defined]
        return True
    return False


async def stored_record(backend: BaseBackend, queue: str, job_id: str) -> dict[str, Any] | None:
    """The job's record as stored, each field as the storage holds it; `None` if gone."""
    if backend.name == "memory":
        stored = backend._stores[queue].jobs.get(job_id)  # type: ignore[attr-defined]
        return None if stored is None else stored.to_record()  # type: ignore[no-any-return]
    if backend.name == "redis":
        record = await backend.client.hgetall(backend._base(queue) + "job:" + job_id)  # type: ignore[attr-defined]
        return dict(record) or None
    if backend.name == "postgres":
        query = f"SELECT * FROM {backend.schema}.jobs WHERE queue = $1 AND id = $2"  # type: ignore[attr-defined]
        row = await backend.pool.fetchrow(query, queue, job_id)  # type: ignore[attr-defined]
        return None if row is None else dict(row)
    if backend.name == "mongodb":
        return await backend.jobs.find_one({"_id": f"{queue}/{job_id}"})  # type: ignore[attr-defined,no-any-return]
    raise AssertionError(f"no damage helper for the {backend.name} backend")


async def damage_worker(backend: BaseBackend, queue: str, worker_id: str) -> None:
    """Set the stored description of a live worker (its heartbeat record) to garbage."""
    if backend.name == "memory":
        backend._stores[queue].workers[worker_id].heartbeat_at = GARBAGE  # type: ignore[attr-defined]
    elif backend.name == "redis":
        await backend.client.hset(backend._base(queue) + "workers:info", worker_id, GARBAGE)  # type: ignore[attr-defined]
    elif backend.name == "postgres":
        query = f"UPDATE {backend.schema}.workers SET info = $1::jsonb WHERE queue = $2 AND id = $3"  # type: ignore[attr-defined]
        await backend.pool.execute(query, orjson.dumps(GARBAGE).decode(), queue, worker_id)  # type: ignore[attr-defined]
    elif backend.name == "mongodb":
        await backend.workers_.update_one({"_id": f"{queue}/{worker_id}"}, {"$set": {"info": GARBAGE}})  # type: ignore[attr-defined]
    else:
        raise AssertionError(f"no damage helper for the {backend.name} backend")
