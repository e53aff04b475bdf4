"""How the MongoDB backend stores a job's dependencies (`Job.deps`, `asyncmq.dependencies`).

`deps` is kept as top-level fields of the job's document, not one embedded document nor JSON
text: `deps_pending` and `deps_children` are what the conditional updates of a release match
and change, and nx-27017, the test server, does not follow a dotted path in `$push`,
`$addToSet` or `$pull`. A parent's result is kept as a `[parent id, JSON text]` pair in
`deps_results` (JSON text for the reason every JSON field is: any value, any key), so each
release `$push`es one without reading the others.

- `deps_parents`, `deps_pending`: `queue/id` references; `deps_policy`: `on_parent_failure`;
- `deps_results`: `[[parent id, JSON text], ...]`, a later pair of one id winning;
- `deps_children`: `queue/id` references, only ever added to (`$addToSet`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson

__all__ = ["FIELDS", "children_clause", "deps_fields", "read_deps"]

FIELDS = ("deps_parents", "deps_pending", "deps_policy", "deps_results", "deps_children")
_NO_CHILDREN: Mapping[str, Any] = {"deps_children": {"$exists": False}}


def deps_fields(deps: Mapping[str, Any]) -> dict[str, Any]:
    """The document's fields for a job's `deps`."""
    fields = {f"deps_{name}": value for name, value in deps.items() if name != "results"}
    if "results" in deps:
        fields["deps_results"] = [
            [key, orjson.dumps(value).decode()] for key, value in deps["results"].items()
        ]
    return fields


def read_deps(document: Mapping[str, Any]) -> dict[str, Any] | None:
    """A job's `deps` from its document; `None` for a job with neither parents nor children.
    `ValueError` or `TypeError` for fields that make no `deps` (changed by hand)."""
    if "deps_parents" not in document and "deps_children" not in document:
        return None
    deps = {name[5:]: document[name] for name in FIELDS if name in document}
    if "results" in deps:
        deps["results"] = {key: orjson.loads(text) for key, text in deps["results"]}
    return deps


def children_clause(children: Sequence[str]) -> Mapping[str, Any]:
    """A filter clause matching a job while it has exactly `children` (children are only ever
    added, so their number tells): what a step ending a job writes under, so that the children
    it then releases are all the job has."""
    return {"deps_children": {"$size": len(children)}} if children else _NO_CHILDREN
