"""The producer's and operator's handle on a queue: add jobs, schedule, inspect, control, run."""

from __future__ import annotations

import time
from collections.abc import Coroutine, Generator, Iterable, Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Unpack

import orjson

from asyncmq import limits
from asyncmq.backoff import Backoff
from asyncmq.conf import settings
from asyncmq.core.event import Event
from asyncmq.core.seam import event_emitter, hooks
from asyncmq.deduplication import Deduplication
from asyncmq.dependencies import new_deps, parent_refs
from asyncmq.errors import InvalidJobError, InvalidScheduleError, JobNotFoundError, UnsupportedError
from asyncmq.job import Job, JobState, encode_arguments, new_job_id, validate_queue_name
from asyncmq.limits import MAX_RETRIES, PRIORITY_MAX, PRIORITY_MIN, identifier, seconds, shown
from asyncmq.logging import get_logger
from asyncmq.options import ENQUEUE_OPTIONS, JOB_DEFAULTS, EnqueueOptions, JobDefaults, check_options
from asyncmq.registry import TASK_REGISTRY
from asyncmq.results import JobId, wait_for_result
from asyncmq.runtime import apply_settings, default_backend
from asyncmq.schedule import Repeatable
from asyncmq.transitions import CANCEL, RETRY, Retention

if TYPE_CHECKING:
    from asyncmq.backends.base import BaseBackend, QueueStats, RateLimit
    from asyncmq.worker import Worker

__all__ = ["Queue", "ScheduleDeclaration"]

log = get_logger(__name__)

#: The keys of an `add_bulk` entry that are not options.
_BULK_FIELDS = ("task_id", "args", "kwargs")


def _stored_options(options: JobDefaults) -> dict[str, Any]:
    """A schedule's options as JSON values: durations in seconds, a backoff as its spec."""
    stored: dict[str, Any] = {}
    for name, value in options.items():
        if isinstance(value, timedelta):
            value = value.total_seconds()
        stored[name] = value
    backoff = Backoff.coerce(options.get("backoff"))  # pinned as a spec: a function kept by path
    if backoff is not None:
        stored["backoff"] = backoff.to_spec()
    return stored


def _emit_stored(jobs: Iterable[Job]) -> None:
    ready: list[Job] = []
    delayed: list[Job] = []
    blocked: list[Job] = []
    for job in jobs:
        if job.status is JobState.DELAYED:
            delayed.append(job)
        elif job.status is JobState.BLOCKED:
            blocked.append(job)
        else:
            ready.append(job)
    event_emitter.emit_jobs(Event.JOB_ENQUEUED, ready)
    event_emitter.emit_jobs(Event.JOB_DELAYED, delayed)
    if blocked:
        event_emitter.emit_jobs(Event.JOB_BLOCKED, blocked)


def _count(value: int | None, what: str, low: int, high: int) -> int | None:
    return None if value is None else limits.integer(value, what, low, high)


def _first_of_each_id(jobs: list[Job]) -> list[Job]:
    """One job per id, the first given: as with an id already stored, a repeat adds nothing."""
    if len({job.id for job in jobs}) == len(jobs):
        return jobs
    firsts: dict[str, Job] = {}
    for job in jobs:
        if job.id in firsts:
            log.info("job %r is given twice in one add_bulk: the first is the one stored", job.id)
        firsts.setdefault(job.id, job)
    return list(firsts.values())


#: Schedules declared by `Queue.add_repeatable` and not stored yet, by queue name, then key:
#: a worker of that queue stores them as it starts (`Queue.store_declared`).
_DECLARED: dict[str, dict[str, ScheduleDeclaration]] = {}


def _forget_declared(queue: str, key: str) -> bool:
    """Take back a declaration once stored or removed; returns whether there was one."""
    declared = _DECLARED.get(queue)
    if declared is None or declared.pop(key, None) is None:
        return False
    if not declared:
        del _DECLARED[queue]
    return True


class ScheduleDeclaration(Coroutine[Any, Any, str]):
    """What `Queue.add_repeatable` returns: a schedule checked and declared, whose `key` is
    known at once. Awaited (or run as a task), it is stored now and gives its key; never
    awaited, as AsyncMQ's guide writes `queue.add_repeatable(...)`, a worker of the queue
    stores it as it starts. A coroutine only once awaited: left alone it raises no
    "never awaited" warning, since leaving it alone is one of its two documented uses."""

    __slots__ = ("_running", "queue", "repeatable")

    def __init__(self, queue: Queue, repeatable: Repeatable) -> None:
        self.queue = queue
        self.repeatable = repeatable
        self._running: Coroutine[Any, Any, str] | None = None

    @property
    def key(self) -> str:
        return self.repeatable.key

    def __repr__(self) -> str:
        return f"<ScheduleDeclaration {self.key} of task {self.repeatable.task!r} on {self.queue.name!r}>"

    async def _store(self) -> str:
        await self.queue.store_repeatable(self.repeatable)
        return self.key

    def __await__(self) -> Generator[Any, None, str]:
        return self._store().__await__()

    def send(self, value: Any) -> Any:
        if self._running is None:
            self._running = self._store()
        return self._running.send(value)

    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> Any:
        if self._running is None:
            self._running = self._store()
        return self._running.throw(typ, val, tb)

    def close(self) -> None:
        if self._running is not None:
            self._running.close()


class Queue:
    """A named queue on a backend. Every method that touches the backend is a coroutine.

    `concurrency`, `rate_limit`/`rate_interval` and `scan_interval` configure the workers
    that `run()` starts; `scan_interval` overrides `Settings.scan_interval` for this queue.
    """

    def __init__(
        self,
        name: str,
        backend: BaseBackend | None = None,
        concurrency: int | None = None,
        rate_limit: int | None = None,
        rate_interval: float | timedelta = 1.0,
        scan_interval: float | timedelta | None = None,
        *,
        lease: float | timedelta | None = None,
        max_stalls: int | None = None,
        result_ttl: float | timedelta | None = None,
        keep_finished: int | None = None,
    ) -> None:
        self.name = validate_queue_name(name)
        self._backend = backend
        try:  # every option checked here, once, and named with the queue
            self._concurrency = _count(concurrency, "concurrency", 1, limits.MAX_CONCURRENCY)
            self.rate_limit = _count(rate_limit, "rate_limit", 1, limits.MAX_COUNT)
            self._max_stalls = _count(max_stalls, "max_stalls", 0, limits.MAX_RETRIES)
            self._keep_finished = _count(keep_finished, "keep_finished", 0, limits.MAX_COUNT)
            self.rate_interval_s = seconds(rate_interval, "rate_interval", allow_zero=False) or 1.0
            self._scan_interval_s = seconds(scan_interval, "scan_interval", allow_zero=False)
            self._lease_s = seconds(lease, "lease", allow_zero=False)
            self._result_ttl_s = seconds(result_ttl, "result_ttl")
        except InvalidJobError as exc:
            raise type(exc)(f"queue {name!r}: {exc}") from None

    def __repr__(self) -> str:
        return f"<Queue {self.name} backend={self.backend.name}>"

    # -- configuration, read through settings at use so tests may reconfigure ---------
    @property
    def backend(self) -> BaseBackend:
        """The queue's backend, else the settings'. Every use of the queue passes here, so
        this is where the settings' instrumentation is switched on (once)."""
        apply_settings()
        return self._backend if self._backend is not None else default_backend()

    @property
    def concurrency(self) -> int:
        return self._concurrency or settings.worker_concurrency

    @property
    def scan_interval_s(self) -> float:
        return self._scan_interval_s or settings.scan_interval

    @property
    def lease_s(self) -> float:
        return self._lease_s or settings.lease_seconds

    @property
    def max_stalls(self) -> int:
        return self._max_stalls if self._max_stalls is not None else settings.max_stalls

    @property
    def rate(self) -> RateLimit | None:
        from asyncmq.backends.base import RateLimit

        return None if self.rate_limit is None else RateLimit(self.rate_limit, self.rate_interval_s)

    @property
    def retention(self) -> Retention:
        ttl_s = self._result_ttl_s if self._result_ttl_s is not None else settings.result_ttl_seconds
        keep = self._keep_finished if self._keep_finished is not None else settings.keep_finished_jobs
        return Retention(ttl_s, keep)

    # -- producing ----------------------------------------------------------------------
    def build_job(
        self,
        task_id: str,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        now: float | None = None,
        fit_task: bool = True,
        **options: Unpack[EnqueueOptions],
    ) -> Job:
        """Validate and build a job without storing it; every check that can refuse a job is here.
        `fit_task=False` leaves out the arguments' fit to the task's signature (`occurrence`)."""
        if not options.keys() <= ENQUEUE_OPTIONS:
            check_options(options, ENQUEUE_OPTIONS, "a job of task {}", shown(task_id))
        task_id = identifier(task_id, "task id")
        # Unset options skip their conversions, and usual values their checks: this runs for every job.
        retries, job_id, priority = options.get("retries"), options.get("job_id"), options.get("priority")
        delay, backoff = options.get("delay"), options.get("backoff")
        ttl, timeout = options.get("ttl"), options.get("timeout")
        if retries is None:
            retries = 0
        elif type(retries) is not int or not 0 <= retries <= MAX_RETRIES:
            retries = limits.retries(retries)
        if priority is None:
            priority = settings.default_priority
        elif type(priority) is not int or not PRIORITY_MIN <= priority <= PRIORITY_MAX:
            priority = limits.priority(priority)
        if job_id is not None:
            job_id = identifier(job_id, "job_id")
        payload = encode_arguments(*limits.arguments(args, kwargs), task_id, settings.max_payload_bytes)
        job_args, job_kwargs = orjson.loads(payload)  # the queue keeps its own copy
        created_at = time.time() if now is None else now
        delay_s = None if delay is None else seconds(delay, "delay")
        spec = None if backoff is None else Backoff.coerce(backoff)
        job = Job(
            id=job_id or new_job_id(),
            queue=self.name,
            task=task_id,
            args=job_args,
            kwargs=job_kwargs,
            priority=priority,
            max_retries=retries,
            backoff=None if spec is None else spec.to_spec(),
            ttl_s=None if ttl is None else seconds(ttl, "ttl", allow_zero=False),
            timeout_s=None if timeout is None else seconds(timeout, "timeout", allow_zero=False),
            created_at=created_at,
        )
        task = TASK_REGISTRY.get(task_id)
        # A task defined here has its arguments checked now, not on a worker; last, so that the
        # options' own errors come first. A call of a shape seen before costs one set lookup
        # (the shape as `asyncmq.tasks.call_shape` makes it, inline: this runs for every job).
        shape = len(job_args) if not job_kwargs else (len(job_args), *job_kwargs)
        if fit_task and task is not None and shape not in task.fitting_shapes:
            task.check_arguments(job_args, job_kwargs)
        if delay_s:
            job.status = JobState.DELAYED
            job.delay_until = created_at + delay_s
        else:
            job.ready_at = created_at
        depends_on = options.get("depends_on")
        if depends_on is not None:
            self._depend(job, depends_on, options.get("on_parent_failure") or "fail")
        return job

    def _depend(self, job: Job, depends_on: object, policy: object) -> None:
        """Block `job` on its parents: the backend stores it `blocked`, or ready at once if its
        parents have completed already (`asyncmq.dependencies`)."""
        parents = parent_refs(depends_on, self.name, job.id)
        if not parents:
            return
        job.deps = new_deps(parents, policy)
        job.status, job.ready_at = JobState.BLOCKED, None

    async def add(
        self,
        task_id: str,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        connection: Any = None,
        **options: Unpack[EnqueueOptions],
    ) -> JobId:
        """Store one job and return its id (a `JobId`: the id string, whose `await .result()`
        waits for the job's result). Adding an id that exists adds nothing (logged).
        The options are `asyncmq.options.EnqueueOptions`: delay, priority, retries, backoff,
        ttl, timeout, job_id, deduplication. With `deduplication={"id": ...}`, a job holding
        that key already means nothing is stored and its id is returned instead (see
        `asyncmq.deduplication`). `connection` (PostgreSQL: an asyncpg connection of yours, in
        a transaction) stores the job in your transaction: it exists only if that commits."""
        deduplication = None
        if options and ("deduplication" in options or "debounce" in options):  # not job fields
            deduplication = Deduplication.from_options(
                options.pop("deduplication", None), options.pop("debounce", None)
            )
        job = self.build_job(task_id, args, kwargs, **options)
        if deduplication is not None:
            return JobId(await self.store_deduplicated(job, deduplication, connection=connection), self)
        await self.store([job], connection=connection)
        return JobId(job.id, self)

    async def add_bulk(self, jobs: Sequence[Mapping[str, Any]], *, connection: Any = None) -> list[JobId]:
        """Store many jobs in one backend call: `[{"task_id": ..., "args": ..., ...}, ...]`,
        each entry taking the options of `add` (and `connection` as there).

        Every job is validated before any is stored, so one bad entry stores nothing. An id
        given twice is one job, the first entry's, and is returned once. Entries with
        `deduplication` are stored after the others, one at a time in their order (each
        decided as by `add`), and give the id of the job holding their key.
        """
        now = time.time()
        built = []
        deduplicated: dict[str, Deduplication] = {}
        for index, spec in enumerate(jobs):
            if "task_id" not in spec:
                raise InvalidJobError(f"add_bulk entry {index} has no 'task_id'")
            options = {key: value for key, value in spec.items() if key not in _BULK_FIELDS}
            check_options(options, ENQUEUE_OPTIONS, "add_bulk entry {}", index)
            deduplication = None
            if "deduplication" in options or "debounce" in options:
                deduplication = Deduplication.from_options(
                    options.pop("deduplication", None), options.pop("debounce", None)
                )
            job = self.build_job(
                spec["task_id"], spec.get("args", ()), spec.get("kwargs"), now=now, **options
            )
            if deduplication is not None:
                deduplicated.setdefault(job.id, deduplication)
            built.append(job)
        built = _first_of_each_id(built)
        if not deduplicated:
            await self.store(built, connection=connection)
            return [JobId(job.id, self) for job in built]
        plain = [job for job in built if job.id not in deduplicated]
        if plain:
            await self.store(plain, connection=connection)
        holders = {}
        for job in built:
            if job.id in deduplicated:
                holders[job.id] = await self.store_deduplicated(
                    job, deduplicated[job.id], connection=connection
                )
        return [JobId(holders.get(job.id, job.id), self) for job in built]

    async def store(self, jobs: list[Job], *, connection: Any = None) -> list[Job]:
        """Store jobs made by `build_job` (or `occurrence`) and emit their events; returns
        those stored (an id that exists in the queue adds nothing, logged)."""
        backend = self.backend  # first: it may switch on the hooks the settings ask for
        if not backend.supports_dependencies and any(job.deps for job in jobs):
            raise UnsupportedError(
                f"the {backend.name} backend does not store jobs with depends_on yet (the memory "
                "backend does): enqueue the child from the parent's task instead"
            )
        hook = hooks.active
        state = hook.before_enqueue(jobs) if hook is not None else None
        try:
            stored = await backend.enqueue(jobs, connection=connection)
        except BaseException as exc:
            if hook is not None:
                hook.after_enqueue(jobs, state, exc)
            raise
        if hook is not None:
            hook.after_enqueue(jobs, state, None)
        new = [job for job, ok in zip(jobs, stored, strict=True) if ok]
        for job, ok in zip(jobs, stored, strict=True):
            if not ok:
                log.info("job %r already exists in queue %r: nothing added", job.id, self.name)
        _emit_stored(new)
        return new

    async def store_deduplicated(
        self, job: Job, deduplication: Deduplication, *, connection: Any = None
    ) -> str:
        """Store a job made by `build_job` unless a job holds its deduplication key (see
        `asyncmq.deduplication`), and emit the events; returns the id of the job holding the
        key afterwards: the job's own when it was stored (or when its id existed already)."""
        if job.deps:
            raise UnsupportedError(
                "a job cannot both depend on others (depends_on) and be deduplicated: keep the "
                "deduplication on the parent, or give the child a fixed job_id instead"
            )
        backend = self.backend  # first: it may switch on the hooks the settings ask for
        hook = hooks.active
        state = hook.before_enqueue([job]) if hook is not None else None
        try:
            outcome = await backend.enqueue_deduplicated(
                job, deduplication, time.time(), connection=connection, retention=self.retention
            )
        except BaseException as exc:
            if hook is not None:
                hook.after_enqueue([job], state, exc)
            raise
        if hook is not None:
            hook.after_enqueue([job], state, None)
        if outcome.stored:
            _emit_stored([job])
            if outcome.replaced is not None:
                event_emitter.emit_job(
                    Event.JOB_DEBOUNCED,
                    job,
                    deduplication_id=deduplication.id,
                    job_id=job.id,
                    deduplicated_job_id=outcome.replaced,
                )
            return job.id
        if outcome.holder is None:
            log.info("job %r already exists in queue %r: nothing added", job.id, self.name)
            return job.id
        log.debug(
            "queue %r: job %r holds deduplication id %r: nothing added",
            self.name,
            outcome.holder,
            deduplication.id,
        )
        event_emitter.emit_job(
            Event.JOB_DEDUPLICATED,
            job,
            deduplication_id=deduplication.id,
            job_id=outcome.holder,
            deduplicated_job_id=job.id,
        )
        return outcome.holder

    def add_repeatable(
        self,
        task_id: str,
        cron: str | None = None,
        every: float | timedelta | None = None,
        args: Sequence[Any] | None = (),
        kwargs: Mapping[str, Any] | None = None,
        **options: Unpack[JobDefaults],
    ) -> ScheduleDeclaration:
        """Run `task_id` on a cron expression (UTC) or every `every` seconds.

        The schedule is checked at once (a bad one raises here, nothing declared), then
        declared: awaited, `await queue.add_repeatable(...)` stores it now and returns its
        key; written without `await`, as AsyncMQ's guide writes it, a worker of this queue in
        this process stores it when it starts (or, already running, within `scan_interval`).
        Either way the key is `.key` at once. Each occurrence is stored ahead of time as a
        delayed job, so it fires within milliseconds of its time, once, however many workers
        run. Adding the same schedule again changes nothing. The options are
        `asyncmq.options.JobDefaults`.
        """
        declaration = ScheduleDeclaration(
            self, self.build_repeatable(task_id, cron, every, args, kwargs, **options)
        )
        _DECLARED.setdefault(self.name, {})[declaration.key] = declaration
        return declaration

    def build_repeatable(
        self,
        task_id: str,
        cron: str | None = None,
        every: float | timedelta | None = None,
        args: Sequence[Any] | None = (),
        kwargs: Mapping[str, Any] | None = None,
        **options: Unpack[JobDefaults],
    ) -> Repeatable:
        """Validate and build a schedule without storing or declaring it (`store_repeatable`
        stores it): every check that can refuse a schedule is here."""
        check_options(options, JOB_DEFAULTS, "the schedule of task {}", shown(task_id))
        if cron is not None and not isinstance(cron, str):
            raise InvalidScheduleError(
                f"cron expression must be a string of 1 to 256 characters, got {shown(cron)}; "
                f"for an interval in seconds write every={shown(cron)}"
            )
        if isinstance(every, str):
            raise InvalidScheduleError(
                f"every= of repeatable {shown(task_id)} must be a number of seconds or a timedelta, "
                f"got {shown(every)}; for a cron expression write cron={shown(every)}"
            )
        args = () if args is None else args
        self.build_job(task_id, args, kwargs, **options)  # refuse bad arguments before storing anything
        return Repeatable.build(
            self.name,
            task_id,
            cron=cron,
            every=every,
            args=list(args),
            kwargs=dict(kwargs or {}),
            options=_stored_options(options),
        )

    async def store_repeatable(self, rep: Repeatable, *, after: float | None = None) -> bool:
        """Store a schedule made by `build_repeatable`, its first occurrence the first time
        after `after` (default: now), and take back its declaration, if any, so no worker
        stores it again. Returns whether it was new (adding it again changes nothing)."""
        _forget_declared(self.name, rep.key)
        rep.next_run_at = rep.next_after(time.time() if after is None else after)
        if not await self.backend.add_repeatable(rep):
            return False
        await self.store([self.occurrence(rep, rep.next_run_at)])
        return True

    async def store_declared(self) -> list[str]:
        """Store the schedules declared for this queue without `await` (`add_repeatable`),
        on this queue's backend: those declared on a `Queue` of this name without a backend
        or with this one. Returns their keys. Each worker calls it as it starts."""
        declared = _DECLARED.get(self.name)
        if not declared:
            return []
        backend = self.backend
        keys = []
        for declaration in list(declared.values()):
            chosen = declaration.queue._backend
            if chosen is not None and chosen is not backend:
                continue  # another backend's: a worker there stores it
            await self.store_repeatable(declaration.repeatable)
            keys.append(declaration.key)
        return keys

    def occurrence(self, rep: Repeatable, at: float) -> Job:
        """The schedule's job at `at`. Its arguments were fitted to the task when the schedule
        was added; a task changed since then fails each occurrence on the worker with the
        `TypeError` of the call, where it shows (a failed job, its event and metrics), rather
        than the scheduler skipping it with a line in its log."""
        options: dict[str, Any] = dict(rep.options)
        if isinstance(options.get("backoff"), dict):
            options["backoff"] = Backoff.from_spec(options["backoff"])
        job_id = rep.occurrence_id(at)
        job = self.build_job(rep.task, rep.args, rep.kwargs, job_id=job_id, fit_task=False, **options)
        job.status, job.delay_until, job.ready_at, job.repeat_key = JobState.DELAYED, at, None, rep.key
        return job

    async def remove_repeatable(
        self,
        key: str | Mapping[str, Any] | ScheduleDeclaration | None = None,
        cron: str | None = None,
        every: float | timedelta | None = None,
        args: Sequence[Any] | None = (),
        kwargs: Mapping[str, Any] | None = None,
        **schedule: Any,
    ) -> bool:
        """Stop a schedule, readable or not (`asyncmq queue info` lists the unreadable ones);
        a readable one's pending occurrence is cancelled too, and a declaration not stored
        yet is taken back. Returns whether there was one.

        Name it by its key (what `add_repeatable` returns, or `asyncmq queue info` shows),
        by what `add_repeatable` returned, or by what it was given: the same arguments
        (`remove_repeatable("app.cleanup", cron="0 * * * *")`, `task_id=` included), or
        AsyncMQ's mapping (`{"task_id": ..., "cron": ..., "args": ...}`). The job options
        among them (`retries`, `priority`, ...) are not part of a schedule's identity."""
        key = self._schedule_key(key, cron, every, args, kwargs, schedule)
        declared = _forget_declared(self.name, key)
        readable, _ = await self.backend.read_repeatables(self.name)
        if not await self.backend.remove_repeatable(self.name, key):
            return declared
        for rep in readable:
            if rep.key == key:
                await self.cancel(rep.occurrence_id(rep.next_run_at))
        return True

    def _schedule_key(
        self,
        named: str | Mapping[str, Any] | ScheduleDeclaration | None,
        cron: str | None,
        every: float | timedelta | None,
        args: Sequence[Any] | None,
        kwargs: Mapping[str, Any] | None,
        given: dict[str, Any],
    ) -> str:
        """The key of the schedule `remove_repeatable` names (see there)."""
        if isinstance(named, ScheduleDeclaration):
            return named.key
        if isinstance(named, str) and cron is None and every is None and not given:
            return named  # a key
        fields: dict[str, Any] = {
            "task_id": named,
            "cron": cron,
            "every": every,
            "args": args,
            "kwargs": kwargs,
        }
        if isinstance(named, Mapping):
            if cron is not None or every is not None or given:
                raise InvalidJobError("remove_repeatable takes a schedule's mapping alone, without keywords")
            fields["task_id"], given = None, dict(named)
        for name, value in given.items():
            if name in fields and (fields[name] is None or name in ("args", "kwargs")):
                fields[name] = value
            elif name not in JOB_DEFAULTS:  # a job option is no part of a schedule's identity
                raise InvalidJobError(
                    f"remove_repeatable got {name}= that names no part of a schedule (or twice); it "
                    f"takes a key, or what add_repeatable was given: {sorted({*fields, *JOB_DEFAULTS})}"
                )
        if fields["task_id"] is None:
            raise InvalidJobError(
                "remove_repeatable needs a schedule's key, or what add_repeatable was given "
                "(task_id with cron= or every=, and the same args and kwargs)"
            )
        return Repeatable.build(
            self.name,
            fields["task_id"],
            cron=fields["cron"],
            every=fields["every"],
            args=list(fields["args"] or ()),
            kwargs=dict(fields["kwargs"] or {}),
            options={},
        ).key

    async def repeatables(self) -> list[Repeatable]:
        """The queue's schedules; one that cannot be read is left out (and logged once)."""
        return await self.backend.repeatables(self.name)

    # -- control ------------------------------------------------------------------------
    async def pause(self) -> None:
        """Workers stop claiming; running attempts finish. Jobs can still be added."""
        await self.backend.set_paused(self.name, True)
        event_emitter.emit(Event.QUEUE_PAUSED, {"queue": self.name, "at": time.time()})

    async def resume(self) -> None:
        await self.backend.set_paused(self.name, False)
        event_emitter.emit(Event.QUEUE_RESUMED, {"queue": self.name, "at": time.time()})

    async def is_paused(self) -> bool:
        return (await self.stats()).paused

    async def cancel(self, job_id: str) -> bool:
        """Cancel a waiting, delayed or running job. A running attempt is interrupted at its
        worker's next heartbeat, and its result, if it still comes, is discarded."""
        job = await self.backend.transition(self.name, job_id, CANCEL, time.time(), self.retention)
        if job is None:
            return False
        event_emitter.emit_job(Event.JOB_CANCELLED, job)
        return True

    async def retry_job(self, job_id: str) -> bool:
        """Send a failed, expired or cancelled job back to `waiting`."""
        job = await self.backend.transition(self.name, job_id, RETRY, time.time(), self.retention)
        if job is None:
            return False
        _emit_stored([job])
        return True

    async def remove_job(self, job_id: str) -> bool:
        """Delete a job that is not running. Its children still waiting for it (`depends_on`)
        fail with `ParentFailedError`, or by their `on_parent_failure` (see `asyncmq.dependencies`)."""
        return await self.backend.remove_job(self.name, job_id, self.retention)

    async def drain(self, include_delayed: bool = False) -> int:
        """Delete every waiting job, and the delayed ones too with `include_delayed`; return
        how many. Schedules keep firing: a drain leaves their pending occurrences. Children
        waiting for a deleted job are told, as by `remove_job`."""
        return await self.backend.drain(self.name, include_delayed, self.retention)

    async def remove_deduplication_key(self, deduplication_id: str) -> bool:
        """Let a deduplication key go, so that the next job given it is stored; its holder
        stays as it is. `False` when no record of the key was kept."""
        key = identifier(deduplication_id, "deduplication id")
        return await self.backend.remove_deduplication_key(self.name, key)

    # -- inspection ---------------------------------------------------------------------
    async def get_deduplication_job_id(self, deduplication_id: str) -> str | None:
        """The id of the job holding a deduplication key, `None` when no job holds it."""
        key = identifier(deduplication_id, "deduplication id")
        return await self.backend.deduplication_holder(self.name, key, time.time())

    async def get_debounce_job_id(self, debounce_id: str) -> str | None:
        """`get_deduplication_job_id` under AsyncMQ's older name."""
        return await self.get_deduplication_job_id(debounce_id)

    async def get_job(self, job_id: str) -> Job:
        job = await self.backend.get_job(self.name, job_id)
        if job is None:
            raise JobNotFoundError(f"no job {job_id!r} in queue {self.name!r}")
        return job

    async def result(self, job_id: str, timeout: float | timedelta | None = None) -> Any:
        """Wait for the job to end and return its task's result. A job that ended without one
        raises: `JobFailedError` (with the task's `error_type` and `error_message`),
        `JobExpiredError`, `JobCancelledError`; a job deleted meanwhile `JobGoneError`, one
        that is not there `JobNotFoundError` (never added, or already past its retention).
        `timeout` (seconds; `None` waits for ever) raises `TimeoutError` naming the job's state.

        Waiting costs the backend's wake-up for the job's end (Redis and PostgreSQL register
        the waiter, MongoDB watches a change stream), plus a read at most once a second."""
        return await wait_for_result(self, job_id, timeout, added=isinstance(job_id, JobId))

    async def get_job_result(self, job_id: str) -> Any:
        """The job's result if it has completed, else `None` (also for a job not found): one
        read, no wait (`result` waits)."""
        job = await self.backend.get_job(self.name, job_id)
        return job.result if job is not None and job.status is JobState.COMPLETED else None

    async def list_jobs(self, state: JobState | str, limit: int = 50, offset: int = 0) -> list[Job]:
        return await self.backend.list_jobs(self.name, JobState(state), limit, offset)

    async def counts(self) -> dict[str, int]:
        """Jobs per state: waiting, delayed, active, completed, failed, expired, cancelled."""
        return (await self.stats()).counts

    async def stats(self) -> QueueStats:
        return await self.backend.stats(self.name, time.time())

    # -- working ------------------------------------------------------------------------
    def worker(self, **options: Any) -> Worker:
        from asyncmq.worker import Worker

        return Worker(self, **options)

    async def run(self, burst: bool = False) -> None:
        """Work this queue until stopped, or with `burst=True` until nothing is left to run."""
        await self.worker(burst=burst).run()
