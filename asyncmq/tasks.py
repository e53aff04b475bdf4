"""Tasks: functions registered under an id, so a worker can run a job by name."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar, Unpack, overload

from asyncmq import limits
from asyncmq.backoff import Backoff
from asyncmq.errors import InvalidJobError
from asyncmq.limits import seconds
from asyncmq.options import ENQUEUE_OPTIONS, JOB_DEFAULTS, EnqueueOptions, JobDefaults, check_options
from asyncmq.registry import TASK_REGISTRY, get_task

if TYPE_CHECKING:
    from asyncmq.backends.base import BaseBackend

__all__ = ["TASK_REGISTRY", "BoundEnqueue", "Task", "get_task", "task"]

P = ParamSpec("P")
R = TypeVar("R")


def _checked_defaults(defaults: JobDefaults) -> JobDefaults:
    """A task's job options checked once, in the form each enqueue passes on."""
    priority = defaults.get("priority")
    retries = defaults.get("retries")
    return {
        "priority": None if priority is None else limits.priority(priority),
        "retries": 0 if retries is None else limits.retries(retries),
        "backoff": Backoff.coerce(defaults.get("backoff")),
        "ttl": seconds(defaults.get("ttl"), "ttl", allow_zero=False),
        "timeout": seconds(defaults.get("timeout"), "timeout", allow_zero=False),
    }


class Task(Generic[P, R]):
    """A registered function. Calling it runs it here and now; `enqueue` runs it on a worker.
    `defaults` are the options of every job it enqueues, unless one enqueue says otherwise."""

    def __init__(self, fn: Callable[P, R], *, name: str, queue: str, defaults: JobDefaults) -> None:
        check_options(defaults, JOB_DEFAULTS, "task {!r}", name)
        try:
            self.defaults = _checked_defaults(defaults)
        except InvalidJobError as exc:  # the same class, saying which task
            raise type(exc)(f"task {name!r}: {exc}") from None
        self.fn = fn
        self.name = name
        self.queue = queue
        self.is_async = inspect.iscoroutinefunction(fn)
        self.__doc__ = fn.__doc__
        self.__name__ = getattr(fn, "__name__", name)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<Task {self.name} queue={self.queue}>"

    async def enqueue(self, backend: BaseBackend | None = None, /, *args: Any, **kwargs: Any) -> str:
        """Enqueue a job running this task with `args` and `kwargs`; returns its id.

        `backend` defaults to the settings' backend. For enqueue options use
        `task.options(delay=..., priority=...).enqueue(...)`.
        """
        return await self.options().enqueue(backend, *args, **kwargs)

    def options(
        self, *, queue: str | None = None, connection: Any = None, **options: Unpack[EnqueueOptions]
    ) -> BoundEnqueue:
        """This task with enqueue options (`asyncmq.options.EnqueueOptions`), another `queue`,
        or a `connection` whose transaction the job joins (see `Queue.add`): kept apart from
        the task's own arguments, so a task may take an argument called `delay` or `priority`."""
        check_options(options, ENQUEUE_OPTIONS, "{}.options()", self.name)
        return BoundEnqueue(self, queue, options, connection)


@dataclass(frozen=True, slots=True)
class BoundEnqueue:
    task: Task[Any, Any]
    queue: str | None
    options: EnqueueOptions
    connection: Any = None

    async def enqueue(self, backend: BaseBackend | None = None, /, *args: Any, **kwargs: Any) -> str:
        from asyncmq.queues import Queue

        given = {name: value for name, value in self.options.items() if value is not None}
        options: EnqueueOptions = {**self.task.defaults, **given}  # type: ignore[typeddict-item]
        queue = Queue(self.queue or self.task.queue, backend=backend)
        return await queue.add(self.task.name, args, kwargs, connection=self.connection, **options)


@overload
def task(fn: Callable[P, R], /) -> Task[P, R]: ...
@overload
def task(
    *, queue: str = ..., name: str | None = ..., **defaults: Unpack[JobDefaults]
) -> Callable[[Callable[P, R]], Task[P, R]]: ...


def task(
    fn: Callable[P, R] | None = None,
    /,
    *,
    queue: str = "default",
    name: str | None = None,
    **defaults: Unpack[JobDefaults],
) -> Task[P, R] | Callable[[Callable[P, R]], Task[P, R]]:
    """Register a function as a task. Its id is `name`, else `module.qualname`.

    `defaults` (`asyncmq.options.JobDefaults`) apply to each of its jobs: `retries` extra
    attempts follow a failure, waiting by `backoff` (default: exponential from 1 s, capped
    at 5 min, jittered; a number is an exponential base, a module-level function
    `(attempt) -> seconds` gives each wait); a job not started within `ttl` expires; an attempt running past
    `timeout` fails; `priority` orders it. Sync functions run in a thread.
    """
    if defaults.get("retries") and defaults.get("backoff") is None:
        defaults["backoff"] = Backoff.exponential()

    def register(fn: Callable[P, R]) -> Task[P, R]:
        task_id = name or f"{fn.__module__}.{fn.__qualname__}"
        registered = Task(fn, name=task_id, queue=queue, defaults=defaults)
        TASK_REGISTRY[task_id] = registered
        return registered

    return register(fn) if fn is not None else register
