"""Hooks: the seam for code that must act around a job rather than only watch it.

Events tell observers what happened; they cannot change a job before it is stored or run an
attempt inside a context. Tracing needs both: it writes the producer's trace context into
the job's metadata as the job is stored, and makes the `process` span current while the task
runs, so spans the task makes nest under it. Each hook is a context manager factory:

- `around_enqueue(jobs)`: entered before the backend stores `jobs` (it may add to each
  job's `meta`), exited once they are stored, with the exception if storing failed.
- `around_attempt(job)`: entered just before the task runs, exited when the attempt's
  outcome is known, with the task's exception if it raised.

With no hook registered the engine skips them entirely. A hook that raises on entry or exit
is logged and skipped: it never fails the job. A hook marked with `guards_itself` promises to
catch its own errors, and is called without that guard: a few hundred nanoseconds an attempt,
which a hook run on every job (tracing) cares about.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, TypeVar

from asyncmq.logging import get_logger

if TYPE_CHECKING:
    from asyncmq.job import Job

__all__ = ["AttemptHook", "EnqueueHook", "Hooks", "guards_itself", "hooks"]

log = get_logger(__name__)

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

EnqueueHook = Callable[[Sequence["Job"]], AbstractContextManager[None]]
AttemptHook = Callable[["Job"], AbstractContextManager[None]]


class Hooks:
    def __init__(self) -> None:
        self.around_enqueue: list[EnqueueHook] = []
        self.around_attempt: list[AttemptHook] = []

    @contextlib.contextmanager
    def enqueueing(self, jobs: Sequence[Job]) -> Iterator[None]:
        with contextlib.ExitStack() as stack:
            for hook in self.around_enqueue:
                _enter(stack, hook, jobs)
            yield

    def attempting(self, job: Job) -> AbstractContextManager[None]:
        if len(self.around_attempt) == 1:  # the usual case (tracing), without an exit stack
            hook = self.around_attempt[0]
            return hook(job) if getattr(hook, "guards_itself", False) else _Guarded(hook, job)
        return self._attempting_all(job)

    @contextlib.contextmanager
    def _attempting_all(self, job: Job) -> Iterator[None]:
        with contextlib.ExitStack() as stack:
            for hook in self.around_attempt:
                _enter(stack, hook, job)
            yield


def guards_itself(hook: F) -> F:
    """Mark `hook` as catching and logging its own errors, on entry and exit alike: the engine
    then calls it as it is. For hooks on every attempt, where the guard's cost shows."""
    hook.guards_itself = True  # type: ignore[attr-defined]
    return hook


class _Guarded:
    """One hook's context manager, with its failures logged and skipped."""

    __slots__ = ("_hook", "_manager")

    def __init__(self, hook: Callable[[T], AbstractContextManager[None]], arg: T) -> None:
        self._hook = hook
        try:
            self._manager: AbstractContextManager[None] | None = hook(arg)
        except Exception:
            log.exception("hook %r failed on entry; skipped", hook)
            self._manager = None

    def __enter__(self) -> None:
        if self._manager is not None:
            try:
                self._manager.__enter__()
            except Exception:
                log.exception("hook %r failed on entry; skipped", self._hook)
                self._manager = None

    def __exit__(self, *exc_info: Any) -> None:  # never swallows the job's own exception
        if self._manager is not None:
            try:
                self._manager.__exit__(*exc_info)
            except Exception:
                log.exception("hook %r failed on exit; skipped", self._hook)


def _enter(stack: contextlib.ExitStack, hook: Callable[[T], AbstractContextManager[None]], arg: T) -> None:
    try:
        manager = hook(arg)
        manager.__enter__()
    except Exception:
        log.exception("hook %r failed on entry; skipped", hook)
        return

    def leave(*exc_info: object) -> bool:
        try:
            manager.__exit__(*exc_info)  # type: ignore[arg-type]
        except Exception:
            log.exception("hook %r failed on exit; skipped", hook)
        return False  # never swallow the job's own exception

    stack.push(leave)


hooks = Hooks()
