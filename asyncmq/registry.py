"""Where a worker finds a job's function: every task defined in this process, by id.

Kept apart from `asyncmq.tasks` (which enqueues through queues) so that the worker and the
metrics can look tasks up without importing the producing side.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from asyncmq.errors import UnknownTaskError

if TYPE_CHECKING:
    from asyncmq.tasks import Task

__all__ = ["TASK_REGISTRY", "get_task"]

#: Every task defined in this process, by id. A worker runs only tasks found here.
TASK_REGISTRY: dict[str, Task[Any, Any]] = {}


def get_task(task_id: str) -> Task[Any, Any]:
    found = TASK_REGISTRY.get(task_id)
    if found is None:
        raise UnknownTaskError(
            f"no task {task_id!r} is registered in this worker; import the module that defines it "
            f"(asyncmq worker start --app MODULE)"
        )
    return found
