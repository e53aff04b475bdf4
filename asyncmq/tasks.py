"""Tasks: functions registered under an id, so a worker can run a job by name."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar, overload

from asyncmq.backoff import Backoff, seconds
from asyncmq.errors import ConfigurationError
from asyncmq.registry import TASK_REGISTRY, get_task

if TYPE_CHECKING:
    from asyncmq.backends.base import BaseBackend

__all__ = ["TASK_REGISTRY", "EnqueueOptions", "Task", "get_task", "task"]

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class EnqueueOptions:
    """How to enqueue, kept apart from the task's own arguments so a task may take an
    argument called `delay` or `priority`."""

    queue: str | None = None
    delay: float | timedelta | None = None
    priority: int | None = None
    job_id: str | None = None
    retries: int | None = None
    backoff: Backoff | float | timedelta | None = None
    ttl: float | timedelta | None = None
    timeout: float | timedelta | None = None


class Task(Generic[P, R]):
    """A registered function. Calling it runs it here and now; `enqueue` runs it on a worker."""

    def __init__(
        self,
        fn: Callable[P, R],
        *,
        name: str,
        queue: str,
        retries: int,
        backoff: Backoff | float | timedelta | None,
        ttl: float | timedelta | None,
        timeout: float | timedelta | None,
        priority: int | None,
    ) -> None:
        if retries < 0:
            raise ConfigurationError(f"task {name!r}: retries must be >= 0, got {retries}")
        self.fn = fn
        self.name = name
        self.queue = queue
        self.retries = retries
        self.backoff = Backoff.coerce(backoff)
        self.ttl_s = seconds(ttl, f"ttl of task {name!r}", allow_zero=False)
        self.timeout_s = seconds(timeout, f"timeout of task {name!r}", allow_zero=False)
        self.priority = priority
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

    def options(self, **options: Any) -> BoundEnqueue:
        return BoundEnqueue(self, EnqueueOptions(**options))


@dataclass(frozen=True, slots=True)
class BoundEnqueue:
    task: Task[Any, Any]
    opts: EnqueueOptions

    async def enqueue(self, backend: BaseBackend | None = None, /, *args: Any, **kwargs: Any) -> str:
        from asyncmq.queues import Queue

        task, opts = self.task, self.opts
        queue = Queue(opts.queue or task.queue, backend=backend)
        return await queue.add(
            task.name,
            args=args,
            kwargs=kwargs,
            delay=opts.delay,
            priority=opts.priority if opts.priority is not None else task.priority,
            retries=opts.retries if opts.retries is not None else task.retries,
            backoff=opts.backoff if opts.backoff is not None else task.backoff,
            ttl=opts.ttl if opts.ttl is not None else task.ttl_s,
            timeout=opts.timeout if opts.timeout is not None else task.timeout_s,
            job_id=opts.job_id,
        )


@overload
def task(fn: Callable[P, R], /) -> Task[P, R]: ...
@overload
def task(
    *,
    queue: str = ...,
    name: str | None = ...,
    retries: int = ...,
    backoff: Backoff | float | timedelta | None = ...,
    ttl: float | timedelta | None = ...,
    timeout: float | timedelta | None = ...,
    priority: int | None = ...,
) -> Callable[[Callable[P, R]], Task[P, R]]: ...


def task(
    fn: Callable[P, R] | None = None,
    /,
    *,
    queue: str = "default",
    name: str | None = None,
    retries: int = 0,
    backoff: Backoff | float | timedelta | None = None,
    ttl: float | timedelta | None = None,
    timeout: float | timedelta | None = None,
    priority: int | None = None,
) -> Task[P, R] | Callable[[Callable[P, R]], Task[P, R]]:
    """Register a function as a task. Its id is `name`, else `module.qualname`.

    `retries` extra attempts follow a failure, waiting by `backoff` (default: exponential
    from 1 s, capped at 5 min, jittered). A job not started within `ttl` expires; an
    attempt running past `timeout` fails. Sync functions run in a thread.
    """

    def register(fn: Callable[P, R]) -> Task[P, R]:
        task_id = name or f"{fn.__module__}.{fn.__qualname__}"
        registered = Task(
            fn,
            name=task_id,
            queue=queue,
            retries=retries,
            backoff=backoff if backoff is not None else (Backoff.exponential() if retries else None),
            ttl=ttl,
            timeout=timeout,
            priority=priority,
        )
        TASK_REGISTRY[task_id] = registered
        return registered

    return register(fn) if fn is not None else register
