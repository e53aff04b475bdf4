"""Hooks: the seam for code that must act around a job rather than only watch it.

Events tell observers what happened; they cannot change a job before it is stored or run an
attempt inside a context. Tracing needs both: it writes the producer's trace context into
the job's metadata as the job is stored, and makes the `process` span current while the task
runs, so spans the task makes nest under it.

A hook is a `JobHook`: pairs of methods called before and after each step, as in Dramatiq's
middleware. Whatever `before_*` returns is handed to the matching `after_*`, with the
exception that ended the step (None on success), so a hook keeps no per-job state of its own:

- `before_enqueue(jobs)` runs before the backend stores `jobs` (it may add to each job's
  `meta`); `after_enqueue(jobs, state, error)` once they are stored, or storing failed.
- `before_attempt(job)` runs just before the task; `after_attempt(job, state, error)` when
  the attempt's outcome is known, with the task's exception if it raised.

Two plain calls cost less than a context manager's three, and this runs on every attempt.
With no hook registered the engine skips them entirely (`seam.hooks.active is None`). A hook that
raises is logged and skipped: it never fails the job. A hook whose `guards_itself` is true
promises to catch its own errors; when it is the only hook the engine calls it directly,
without that guard.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from asyncmq.logging import get_logger

if TYPE_CHECKING:
    from asyncmq.job import Job

__all__ = ["Hooks", "JobHook"]

log = get_logger(__name__)


class JobHook:
    """Acts around enqueues and attempts. Override what you need: the defaults do nothing."""

    #: True when every method catches and logs its own errors (see the module's docstring).
    guards_itself: ClassVar[bool] = False

    def before_enqueue(self, jobs: Sequence[Job]) -> Any:
        return None

    def after_enqueue(self, jobs: Sequence[Job], state: Any, error: BaseException | None) -> None:
        return None

    def before_attempt(self, job: Job) -> Any:
        return None

    def after_attempt(self, job: Job, state: Any, error: BaseException | None) -> None:
        return None


class Hooks:
    """The registered hooks, and `active`: what the engine calls (None when there are none)."""

    def __init__(self) -> None:
        self._registered: list[JobHook] = []
        self.active: JobHook | None = None

    def add(self, hook: JobHook) -> None:
        self._registered.append(hook)
        self._refresh()

    def remove(self, hook: JobHook) -> None:
        """Remove `hook`; steps it has begun still get their `after_*` call."""
        self._registered.remove(hook)
        self._refresh()

    def clear(self) -> None:
        self._registered.clear()
        self._refresh()

    def __len__(self) -> int:
        return len(self._registered)

    def _refresh(self) -> None:
        registered = self._registered
        if not registered:
            self.active = None
        elif len(registered) == 1 and registered[0].guards_itself:
            self.active = registered[0]  # the usual case (tracing): called as it is
        else:
            self.active = _Guarded(tuple(registered))


class _Guarded(JobHook):
    """Several hooks, or one that does not guard itself: each called in turn, its failures
    logged and skipped. `after_*` run in reverse order, as nested context managers would."""

    guards_itself = True

    def __init__(self, hooks: tuple[JobHook, ...]) -> None:
        self._hooks = hooks

    def before_enqueue(self, jobs: Sequence[Job]) -> list[tuple[JobHook, Any]]:
        return self._before("before_enqueue", jobs)

    def after_enqueue(self, jobs: Sequence[Job], state: Any, error: BaseException | None) -> None:
        self._after("after_enqueue", jobs, state, error)

    def before_attempt(self, job: Job) -> list[tuple[JobHook, Any]]:
        return self._before("before_attempt", job)

    def after_attempt(self, job: Job, state: Any, error: BaseException | None) -> None:
        self._after("after_attempt", job, state, error)

    def _before(self, method: str, subject: Any) -> list[tuple[JobHook, Any]]:
        begun = []
        for hook in self._hooks:
            try:
                begun.append((hook, getattr(hook, method)(subject)))
            except Exception:
                log.exception("hook %r failed in %s; skipped", hook, method)
        return begun

    def _after(
        self, method: str, subject: Any, begun: list[tuple[JobHook, Any]], error: BaseException | None
    ) -> None:
        for hook, state in reversed(begun):  # only the hooks whose `before_*` succeeded
            try:
                getattr(hook, method)(subject, state, error)
            except Exception:
                log.exception("hook %r failed in %s; skipped", hook, method)
