"""Tasks: functions registered under an id, so a worker can run a job by name.

A task enqueues in AsyncMQ's two forms: `await task.enqueue(*args, backend=..., delay=...,
priority=..., repeat_every=..., **kwargs)`, and with the backend first,
`await task.enqueue(backend, *args)`. The other options, and a task argument named like one of
those keywords, go through `task.options(...)`, which keeps the two apart. Arguments that do
not fit the function's signature are refused at the enqueue (and at `Queue.add` for a task
defined in the producing process), before anything is stored.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar, Unpack, cast, overload

from asyncmq import limits
from asyncmq.backends.base import BaseBackend
from asyncmq.backoff import Backoff
from asyncmq.errors import InvalidJobError, TaskArgumentsError
from asyncmq.limits import seconds
from asyncmq.options import ENQUEUE_OPTIONS, JOB_DEFAULTS, EnqueueOptions, JobDefaults, check_options
from asyncmq.registry import TASK_REGISTRY, get_task

if TYPE_CHECKING:
    from asyncmq.results import JobId

__all__ = ["ENQUEUE_KEYWORDS", "TASK_REGISTRY", "BoundEnqueue", "Task", "call_shape", "get_task", "task"]

P = ParamSpec("P")
R = TypeVar("R")

#: The options `Task.enqueue` takes beside the task's own arguments, under AsyncMQ's names.
ENQUEUE_KEYWORDS = ("backend", "delay", "priority", "depends_on", "repeat_every")

#: How to ask for each of those options when the task has a parameter of the same name;
#: `{fn}` is the task's function name, `{task}` its id.
_OPTION_WAYS = {
    "backend": "{fn}.enqueue(backend, ...) or {fn}.options(backend=...).enqueue(...)",
    "delay": "{fn}.options(delay=...).enqueue(...)",
    "priority": "{fn}.options(priority=...).enqueue(...)",
    "depends_on": "{fn}.options(depends_on=...).enqueue(...)",
    "repeat_every": "queue.add_repeatable({task!r}, every=...) beside the enqueue",
}

#: Call shapes known to fit remembered per task, at most: a task taking `**kwargs` may be
#: called with ever new keyword names, each a new shape.
_SHAPES_KEPT = 256

_KEYWORD_KINDS = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


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


def _signature_of(fn: Callable[..., Any]) -> inspect.Signature | None:
    """The function's signature, or `None` for a callable Python cannot describe (some
    builtins): its arguments are then left for the call to judge."""
    try:
        return inspect.signature(fn)
    except (TypeError, ValueError):
        return None


def call_shape(args: Sequence[Any], kwargs: Mapping[str, Any]) -> int | tuple[Any, ...]:
    """What decides whether a call binds: how many positional arguments, and which keywords.
    The count alone when there are none, the usual case: a set looks an int up fastest."""
    return len(args) if not kwargs else (len(args), *kwargs)


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
        #: How the function is called, or `None` when Python cannot tell (then unchecked).
        self.signature = _signature_of(fn)
        keywords = () if self.signature is None else self.signature.parameters.values()
        #: `Task.enqueue` keywords that are also parameters of the function: ambiguous there.
        self._shadowed = frozenset(ENQUEUE_KEYWORDS) & {p.name for p in keywords if p.kind in _KEYWORD_KINDS}
        #: Calls known to fit, by shape (`call_shape`). Enqueueing looks here first
        #: (`Queue.build_job`, inline), and calls `check_arguments` for a new shape.
        self.fitting_shapes: set[int | tuple[Any, ...]] = set()

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<Task {self.name} queue={self.queue}>"

    def check_arguments(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        """Raise `TaskArgumentsError`, naming this task, its signature and the mismatch, when a
        worker could not call the function with `args` and `kwargs`. Only the call's shape
        counts (how many positional arguments, which keywords), so each shape is judged once:
        this runs on every enqueue of a task defined in the producing process."""
        if self.signature is None:
            return
        shape = call_shape(args, kwargs)
        if shape in self.fitting_shapes:
            return
        problem = self._bind_problem(len(args), tuple(kwargs))
        if problem is not None:
            raise TaskArgumentsError(
                f"the arguments do not fit task {self.name!r}, {self._shown()}: {problem}"
            )
        if len(self.fitting_shapes) < _SHAPES_KEPT:
            self.fitting_shapes.add(shape)

    def _shown(self) -> str:
        """The function as called, `send_email(to, subject, *, cc=None)`: its parameters
        without their annotations, which postponed evaluation would show as quoted text."""
        assert self.signature is not None
        empty = inspect.Parameter.empty
        parameters = [p.replace(annotation=empty) for p in self.signature.parameters.values()]
        return f"{self.__name__}{self.signature.replace(parameters=parameters, return_annotation=empty)}"

    def _bind_problem(self, count: int, names: tuple[str, ...]) -> str | None:
        assert self.signature is not None
        try:
            self.signature.bind(*range(count), **dict.fromkeys(names))
        except TypeError as exc:
            return str(exc)
        return None

    async def enqueue(
        self,
        *args: Any,
        backend: BaseBackend | None = None,
        delay: float | timedelta | None = None,
        priority: int | None = None,
        depends_on: Sequence[str | tuple[str, str]] | None = None,
        repeat_every: float | timedelta | None = None,
        **kwargs: Any,
    ) -> JobId:
        """Enqueue a job running this task with `args` and `kwargs`; returns its id (a
        `JobId`: `await job_id.result()` waits for its result).

        `backend` (or a backend given as the first argument) defaults to the settings'. The
        job runs no sooner than `delay` (seconds or a `timedelta`) from now; lower `priority`
        runs first; `depends_on` (parent ids) keeps it blocked until they completed
        (`asyncmq.dependencies`). `repeat_every` also runs the task every that many seconds from then on,
        with the same arguments: a schedule, as `Queue.add_repeatable(every=...)` adds, which
        enqueueing again does not add twice. Any other option goes through `task.options(...)`,
        as does an argument of the task named like one of these keywords: such a keyword
        here is refused rather than guessed at.
        """
        if self._shadowed:
            given = dict(
                zip(ENQUEUE_KEYWORDS, (backend, delay, priority, depends_on, repeat_every), strict=True)
            )
            self._refuse_shadowed([name for name, value in given.items() if value is not None])
        options: EnqueueOptions = {}
        if depends_on:
            options["depends_on"] = depends_on
        if delay is not None:
            options["delay"] = delay
        if priority is not None:
            options["priority"] = priority
        return await BoundEnqueue(self, None, options, backend=backend)._enqueue(args, kwargs, repeat_every)

    #: AsyncMQ's other names of `enqueue`.
    delay = enqueue
    send = enqueue

    def _refuse_shadowed(self, given: list[str]) -> None:
        clashing = [name for name in given if name in self._shadowed]
        if clashing:
            name = clashing[0]
            way = _OPTION_WAYS[name].format(fn=self.__name__, task=self.name)
            raise TaskArgumentsError(
                f"{self.__name__}.enqueue(..., {name}=...) is ambiguous: task {self.name!r} has a "
                f"parameter {name!r}, and {name!r} is also an option of enqueue. For the option "
                f"write {way}; to pass it to the task, {self.__name__}.options().enqueue(..., {name}=...)"
            )

    def options(
        self,
        *,
        queue: str | None = None,
        connection: Any = None,
        backend: BaseBackend | None = None,
        **options: Unpack[EnqueueOptions],
    ) -> BoundEnqueue:
        """This task with enqueue options (`asyncmq.options.EnqueueOptions`), another `queue`,
        a `backend`, or a `connection` whose transaction the job joins (see `Queue.add`): kept
        apart from the task's own arguments, so a task may take an argument called `delay`
        or `priority`."""
        check_options(options, ENQUEUE_OPTIONS, "{}.options()", self.name)
        return BoundEnqueue(self, queue, options, connection, backend)


@dataclass(frozen=True, slots=True)
class BoundEnqueue:
    """A task with its enqueue options (`Task.options`): every argument of `enqueue` is the
    task's own."""

    task: Task[Any, Any]
    queue: str | None
    options: EnqueueOptions
    connection: Any = None
    backend: BaseBackend | None = None

    async def enqueue(self, *args: Any, **kwargs: Any) -> JobId:
        """Enqueue the task with `args` and `kwargs`; returns the job's id. A backend may
        come first (`enqueue(backend, *args)`); else the one given to `options`, else the
        settings'."""
        return await self._enqueue(args, kwargs, None)

    async def _enqueue(
        self, args: Sequence[Any], kwargs: Mapping[str, Any], repeat_every: float | timedelta | None
    ) -> JobId:
        """Store the job and, with `repeat_every`, its schedule: both checked before either
        is stored."""
        from asyncmq.queues import Queue

        backend = self.backend
        if args and isinstance(args[0], BaseBackend):
            if backend is not None:
                raise InvalidJobError(
                    f"{self.task.__name__}.enqueue got two backends, one as its first argument and "
                    "one as backend=: give one"
                )
            backend, args = args[0], args[1:]
        given = {name: value for name, value in self.options.items() if value is not None}
        options: EnqueueOptions = {**self.task.defaults, **given}  # type: ignore[typeddict-item]
        queue = Queue(self.queue or self.task.queue, backend=backend)
        if repeat_every is None:
            return await queue.add(self.task.name, args, kwargs, connection=self.connection, **options)
        job_defaults = cast(
            JobDefaults,
            {name: value for name, value in options.items() if name in JOB_DEFAULTS and value is not None},
        )
        schedule = queue.build_repeatable(
            self.task.name, every=repeat_every, args=args, kwargs=kwargs, **job_defaults
        )
        job_id = await queue.add(self.task.name, args, kwargs, connection=self.connection, **options)
        starts_at = time.time() + (seconds(options.get("delay"), "delay") or 0.0)  # the job's first run
        await queue.store_repeatable(schedule, after=starts_at)
        return job_id


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
