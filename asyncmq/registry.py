"""Where a worker finds a job's function: every task defined in this process, by id.

Kept apart from `asyncmq.tasks` (which enqueues through queues) so that the worker and the
metrics can look tasks up without importing the producing side.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from asyncmq.errors import UnknownTaskError

if TYPE_CHECKING:
    from asyncmq.tasks import Task

__all__ = ["TASK_REGISTRY", "get_task", "set_unknown_task_hint"]

#: Every task defined in this process, by id. A worker runs only tasks found here.
TASK_REGISTRY: dict[str, Task[Any, Any]] = {}

#: What an unknown task's error tells the user to do. A worker run from the user's own code
#: (`queue.run()`) finds only the tasks that code defined or imported; `asyncmq worker start`
#: replaces this with its `--app` hint, the one way to import them there.
_unknown_task_hint = (
    "define or import it in this process before the worker starts "
    "(a task's id is its name=, else module.qualname)"
)


def set_unknown_task_hint(hint: str) -> str:
    """Say how tasks get into this process, for the error of a job whose task is not found;
    returns the hint it replaces, for the caller to put back when its workers stop."""
    global _unknown_task_hint
    previous, _unknown_task_hint = _unknown_task_hint, hint
    return previous


def get_task(task_id: str) -> Task[Any, Any]:
    found = TASK_REGISTRY.get(task_id)
    if found is None:
        raise UnknownTaskError(
            f"no task {task_id!r} is registered in this worker{_same_function(task_id)}; {_unknown_task_hint}"
        )
    return found


def _same_function(task_id: str) -> str:
    """A registered id with the same function name: the usual slip is a task defined in a
    script (`__main__.send_email`) and enqueued by its module path (`app.tasks.send_email`)."""
    function = task_id.rpartition(".")[2]
    near = sorted(known for known in TASK_REGISTRY if known.rpartition(".")[2] == function)
    return f" (registered: {', '.join(map(repr, near[:3]))})" if near else ""
