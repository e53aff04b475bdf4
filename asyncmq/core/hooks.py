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
is logged and skipped: it never fails the job.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, TypeVar

from asyncmq.logging import get_logger

if TYPE_CHECKING:
    from asyncmq.job import Job

__all__ = ["AttemptHook", "EnqueueHook", "Hooks", "hooks"]

log = get_logger(__name__)

T = TypeVar("T")

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

    @contextlib.contextmanager
    def attempting(self, job: Job) -> Iterator[None]:
        with contextlib.ExitStack() as stack:
            for hook in self.around_attempt:
                _enter(stack, hook, job)
            yield


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
