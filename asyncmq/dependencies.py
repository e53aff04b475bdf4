"""Jobs that run after others: `Queue.add(..., depends_on=[...])` and flows (`asyncmq.flow`).

A child names its parents. It is stored `blocked` and becomes waiting (or delayed, if its own
delay is still ahead) in the same atomic step as its last parent's completion. Each parent's
result is copied into the child as the parent completes (`parent_results`), so the child reads
them even after retention deleted its parents.

A parent that ends without completing (failed, expired or cancelled) acts on each child by
the child's `on_parent_failure`:

- `"fail"` (the default): the child fails at once with `ParentFailedError` naming the parent,
  and its own children follow by their policies;
- `"ignore"`: the parent counts as done, with no result;
- `"wait"`: the child stays blocked; a manual retry of the parent that then completes releases
  it (AsyncMQ's behaviour).

A parent removed before it ended (`remove_job`, `drain`, a debounce replacing it) acts on its
children as one that ended without completing, in the step that removes it: `"fail"` fails
them (the parent "was removed"), `"ignore"` frees them, and `"wait"` keeps them blocked for a
retry that cannot come, until they are removed or cancelled.

A parent that does not exist when the child is added is an error, and nothing is stored.

The stored form is one JSON field of the job, `deps` (None for a job with neither parents nor
children): `parents` and `pending` (the parents not yet resolved) as `queue/id` references,
`policy`, `results` by parent id, and, on a parent, `children` (references). A backend makes
these moves in its own atomic steps; the functions here are their reference, as
`Transition.apply` is for transitions, and the conformance suite holds every backend to them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, get_args

from asyncmq.errors import InvalidJobError, ParentFailedError
from asyncmq.job import TERMINAL_STATES, Job, JobState, validate_queue_name
from asyncmq.options import ParentFailure

__all__ = [
    "MAX_PARENTS",
    "add_child",
    "children_of",
    "new_deps",
    "parent_ended",
    "parent_refs",
    "parent_removed",
    "ref",
    "split_ref",
]

_POLICIES: tuple[str, ...] = get_args(ParentFailure)
#: At most this many parents per job: each is one more lookup in the step that stores it.
MAX_PARENTS = 1000


def ref(queue: str, job_id: str) -> str:
    """A job's reference across queues (a queue name holds no '/')."""
    return f"{queue}/{job_id}"


def split_ref(reference: str) -> tuple[str, str]:
    queue, _, job_id = reference.partition("/")
    return queue, job_id


def parent_refs(depends_on: object, queue: str, child_id: str) -> list[str]:
    """The references of the parents `depends_on` names: ids in `queue`, ids returned by
    `add` (a `JobId`, which knows its queue) or `(queue, id)` pairs; each once, in order."""
    if isinstance(depends_on, str) or not isinstance(depends_on, Iterable):
        raise InvalidJobError(
            f"depends_on must be a list of job ids, not {type(depends_on).__name__}: "
            "write depends_on=[parent_id]"
        )
    refs: dict[str, None] = {}
    for parent in depends_on:
        refs[_parent_ref(parent, queue)] = None
    if ref(queue, child_id) in refs:
        raise InvalidJobError(f"job {child_id!r} cannot depend on itself")
    ids = [split_ref(reference)[1] for reference in refs]
    if len(set(ids)) < len(ids):
        raise InvalidJobError(
            "depends_on names two parents with the same id in different queues: their results "
            "are kept by id, so give them different ids"
        )
    if len(refs) > MAX_PARENTS:
        raise InvalidJobError(f"depends_on names {len(refs)} parents; the limit is {MAX_PARENTS}")
    return list(refs)


def _parent_ref(parent: object, queue: str) -> str:
    own_queue = getattr(parent, "queue", None)  # a JobId
    if isinstance(parent, str) and own_queue is not None:
        return ref(validate_queue_name(getattr(own_queue, "name", own_queue)), str(parent))
    if isinstance(parent, str) and parent:
        return ref(queue, parent)
    if isinstance(parent, tuple) and len(parent) == 2 and all(isinstance(p, str) for p in parent):
        return ref(validate_queue_name(parent[0]), parent[1])
    raise InvalidJobError(
        f"depends_on holds {parent!r:.100}: each parent is a job id, the id `add` returned, "
        "or a (queue, job id) pair"
    )


def new_deps(parents: Sequence[str], policy: object) -> dict[str, Any]:
    if policy not in _POLICIES:
        raise InvalidJobError(f"on_parent_failure must be one of {list(_POLICIES)}, not {policy!r:.100}")
    return {"parents": list(parents), "pending": list(parents), "policy": policy, "results": {}}


def children_of(job: Job) -> list[str]:
    return list(job.deps.get("children", ())) if job.deps else []


def parent_ended(child: Job, parent: Job, now: float) -> bool:
    """Apply a parent's end (or, at the child's add, its state) to a blocked child: resolve it
    (completed, or ended with the policy `ignore`), fail the child (`fail`), or keep it waiting
    (`wait`, or a parent not ended). Returns whether the child failed by it. Once nothing is
    pending, the child becomes waiting, or delayed while its own delay is ahead."""
    if parent.status not in TERMINAL_STATES:
        return False
    completed = parent.status is JobState.COMPLETED
    how = f"ended {parent.status.value}"
    return _settle(child, parent.queue, parent.id, how, completed, parent.result, now)


def parent_removed(child: Job, queue: str, parent_id: str, now: float) -> bool:
    """Apply the removal of a parent that had not ended (`remove_job`, `drain`, a debounce
    replacing it) to a blocked child, as an end without completing: `fail` fails the child
    (its error says the parent was removed), `ignore` resolves it with no result, and `wait`
    keeps it blocked, waiting for a retry of a parent that no longer exists. Returns whether
    the child failed by it."""
    return _settle(child, queue, parent_id, "was removed", False, None, now)


def _settle(
    child: Job, queue: str, parent_id: str, how: str, completed: bool, result: Any, now: float
) -> bool:
    deps = child.deps
    reference = ref(queue, parent_id)
    if child.status is not JobState.BLOCKED or deps is None or reference not in deps["pending"]:
        return False
    if not completed and deps["policy"] == "wait":
        return False
    if not completed and deps["policy"] == "fail":
        child.status, child.finished_at = JobState.FAILED, now
        error = ParentFailedError(f"parent job {parent_id} of queue {queue!r} {how}")
        child.error = {"type": type(error).__name__, "message": str(error)}
        return True
    deps["pending"] = [p for p in deps["pending"] if p != reference]
    if completed:
        deps["results"][parent_id] = result
    if not deps["pending"]:
        if child.delay_until is not None and child.delay_until > now:
            child.status = JobState.DELAYED
        else:
            child.status, child.ready_at = JobState.WAITING, now
    return False


def add_child(parent: Job, child: Job) -> None:
    """Record `child` on `parent`, whose end it waits for."""
    if parent.deps is None:
        parent.deps = {}
    children = parent.deps.setdefault("children", [])
    reference = ref(child.queue, child.id)
    if reference not in children:
        children.append(reference)
