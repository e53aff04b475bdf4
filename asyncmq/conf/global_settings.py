"""Defaults for every setting. Subclass `Settings` and point `ASYNCMQ_SETTINGS_MODULE` at it.

Any field can also be set by an `ASYNCMQ_<FIELD>` environment variable (`ASYNCMQ_SCAN_INTERVAL=0.2`),
converted to the field's type; the environment wins over the class.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from asyncmq.conf.asyncmq_names import FOREIGN_NAMES, RENAMED, class_fields, closest, converted, refusal
from asyncmq.errors import ConfigurationError

__all__ = ["Settings"]

if TYPE_CHECKING:
    from asyncmq.backends.base import BaseBackend


class Settings:
    """Fields are class attributes, so a subclass overrides one by redeclaring it."""

    #: The default backend: an instance, or a URL (`memory://`, `redis://...`, ...).
    backend: BaseBackend | str = "memory://"
    #: The longest the scheduler sleeps between looks at delayed jobs and repeatables. It
    #: also wakes at the next due time and when a sooner job is added, so this bounds
    #: the lateness only when a wake-up is missed (another process added the job).
    scan_interval: float = 1.0
    #: Attempts a worker runs at once, per queue, unless the queue or the CLI says otherwise.
    worker_concurrency: int = 10
    #: Jobs a worker claims in one backend round trip, at most.
    claim_batch_size: int = 100
    #: How long an active job stays owned by its worker without a heartbeat.
    lease_seconds: float = 30.0
    #: A job whose worker vanishes more often than this goes to the dead-letter queue (failed).
    max_stalls: int = 1
    #: How long a stopping worker lets running attempts finish before handing them back.
    shutdown_grace_seconds: float = 30.0
    #: Default priority: lower numbers run first.
    default_priority: int = 5
    #: Encoded arguments larger than this are refused at enqueue.
    max_payload_bytes: int = 1_048_576
    #: Finished jobs (completed, failed, expired, cancelled) are kept this long...
    result_ttl_seconds: float = 86_400.0
    #: ...and at most this many per queue and state, newest kept.
    keep_finished_jobs: int = 10_000
    #: Observability, in any process that loads these settings (workers, and producers such
    #: as a web server), from the first use of a queue or worker on; needs
    #: `pip install 'asyncmq[observability]'`. `metrics`: the job metrics, in the default
    #: Prometheus registry (serve it as your app does, or with the worker's --metrics-port).
    metrics: bool = False
    #: `tracing`: a `send` span per enqueue and a `process` span per attempt, through the global
    #: OpenTelemetry tracer provider or, when none is set, one configured from the standard
    #: `OTEL_*` variables (exporting over OTLP/HTTP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set).
    tracing: bool = False
    #: Each attempt's `process` span starts a trace of its own, linked to the producer's `send`
    #: span, instead of continuing the producer's trace: keeps a large fan-out from making one
    #: huge trace.
    tracing_link: bool = False
    #: Label caps: past this many distinct queues (or tasks) a process's metrics show the
    #: others as `queue="other"` (`task="other"`), summed, and count them in
    #: `asyncmq_metric_label_values_folded_total`, so invented names cannot swell a scrape.
    metrics_max_queues: int = 100
    metrics_max_tasks: int = 200

    #: Log level of `asyncmq worker start` unless `--log-level` says otherwise.
    log_level: str = "info"
    #: Modules `asyncmq worker start` imports before it starts, as `--app` does: those that
    #: define the tasks its workers run.
    app_modules: tuple[str, ...] = ()

    def __init__(self, **overrides: object) -> None:
        """Take the fields the class sets, then `overrides` (which win), each by our name or
        AsyncMQ's; a field that is neither, or that cannot mean here what it meant there, is
        refused now rather than ignored."""
        from_class: dict[str, str] = {}
        for klass, name, value, annotated in class_fields(type(self), Settings):
            self._take(from_class, f"{klass.__name__}.{name}", name, value, annotated)
        from_call: dict[str, str] = {}
        for name, value in overrides.items():
            self._take(
                from_call, f"{type(self).__name__}({name}=...)", name, value, name in self.field_names()
            )

    def _take(self, taken: dict[str, str], where: str, name: str, value: object, declared: bool) -> None:
        """Set the field `name` (`declared` with a type by this class, if so) from `value`;
        `taken` maps each field already set in this layer to where, so two names of one
        field cannot disagree."""
        known = set(Settings.field_names())
        if name in RENAMED:
            ours, value = converted(name, value)
        elif (why := refusal(name, value)) is not None:
            raise ConfigurationError(f"{where} = {value!r}: {why}")
        elif name in FOREIGN_NAMES:
            return  # AsyncMQ's field set to what always happens here
        elif name in known or (declared and closest(name, known, cutoff=0.9) is None):
            ours = name  # a field of ours, or one of the class's own (declared, and no misspelling)
        else:
            guess = closest(name, known)
            hint = (
                f"did you mean {guess!r}?"
                if guess
                else "a setting of your own needs a type (name: str = ...)"
            )
            raise ConfigurationError(f"{where}: {type(self).__name__} has no setting {name!r}; {hint}")
        if ours in taken and getattr(self, ours) != value:
            raise ConfigurationError(
                f"{where} and {taken[ours]} both set {ours} (one is AsyncMQ's name for the other) to "
                "different values: keep one of them"
            )
        taken[ours] = where
        setattr(self, ours, value)

    @classmethod
    def field_names(cls) -> dict[str, object]:
        """Every setting and its annotation, including those a subclass adds."""
        names: dict[str, object] = {}
        for klass in reversed(cls.__mro__):
            names.update(getattr(klass, "__annotations__", {}))
        return names
