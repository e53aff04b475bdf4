"""The active settings: `from asyncmq.conf import settings`.

Loaded on first use from `ASYNCMQ_SETTINGS_MODULE` ("package.module.Settings" or
"package.module:Settings"), else the defaults, then `ASYNCMQ_*` environment variables (only
those: AsyncMQ's unprefixed ones, `WORKER_CONCURRENCY=8`, would read any process's unrelated
variables). A settings class may use AsyncMQ's field names (`asyncmq.conf.asyncmq_names`).
This package only reads settings: what they set up (the backend built from its URL, the
instrumentation they ask for) happens in `asyncmq.runtime`, when a queue or worker is used.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping
from typing import Any

from asyncmq.conf.asyncmq_names import LOG_LEVELS
from asyncmq.conf.global_settings import Settings
from asyncmq.errors import ConfigurationError, InvalidJobError
from asyncmq.limits import MAX_CONCURRENCY, MAX_COUNT, MAX_RETRIES, integer, priority, seconds

__all__ = ["Settings", "active_settings", "configure", "load_settings", "settings"]

_ENV_PREFIX = "ASYNCMQ_"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _load_class(path: str) -> type[Settings]:
    module_name, sep, attr = path.partition(":") if ":" in path else path.rpartition(".")
    if not sep or not module_name:
        raise ConfigurationError(f"ASYNCMQ_SETTINGS_MODULE={path!r} must name a class: 'pkg.module.Settings'")
    try:
        klass = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(f"ASYNCMQ_SETTINGS_MODULE={path!r} cannot be loaded: {exc}") from exc
    if not (isinstance(klass, type) and issubclass(klass, Settings)):
        raise ConfigurationError(f"ASYNCMQ_SETTINGS_MODULE={path!r} is not a subclass of Settings")
    return klass


def _convert(name: str, annotation: object, raw: str) -> Any:
    """Convert by the field's annotation, a type or (with postponed annotations) its text."""
    text = annotation.__name__ if isinstance(annotation, type) else str(annotation)
    kind = text.replace(" ", "").split("|")[0]
    try:
        if kind == "bool":
            if raw.lower() not in _TRUE | _FALSE:
                raise ValueError("expected true/false")
            return raw.lower() in _TRUE
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind.startswith("tuple"):
            return tuple(part.strip() for part in raw.split(",") if part.strip())
    except ValueError as exc:
        raise ConfigurationError(
            f"{_ENV_PREFIX}{name.upper()}={raw!r} is not a valid {kind}: {exc}"
        ) from None
    return raw


def _count(low: int, high: int) -> Callable[[object, str], object]:
    return lambda value, name: integer(value, name, low, high)


def _duration(*, allow_zero: bool) -> Callable[[object, str], object]:
    return lambda value, name: seconds(value, name, allow_zero=allow_zero)


def _log_level(value: object, name: str) -> str:
    if not isinstance(value, str) or value.lower() not in LOG_LEVELS:
        raise InvalidJobError(f"{name} must be one of {', '.join(LOG_LEVELS)}, not {value!r}")
    return value.lower()


def _module_names(value: object, name: str) -> tuple[str, ...]:
    items = (value,) if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not all(isinstance(item, str) and item for item in items):
        raise InvalidJobError(f"{name} must be a list of module names ('myproject.tasks'), not {value!r}")
    return tuple(items)


#: The range of each numeric setting: the same as the `Queue` option or CLI flag it stands
#: in for, so `ASYNCMQ_WORKER_CONCURRENCY=0` is refused as `--concurrency 0` is, not run as
#: a worker that never claims a job.
_CHECKS: dict[str, Callable[[object, str], object]] = {
    "default_priority": lambda value, name: priority(value, name),
    "worker_concurrency": _count(1, MAX_CONCURRENCY),
    "claim_batch_size": _count(1, MAX_CONCURRENCY),
    "max_stalls": _count(0, MAX_RETRIES),
    "max_payload_bytes": _count(1, MAX_COUNT),
    "keep_finished_jobs": _count(0, MAX_COUNT),
    "metrics_max_queues": _count(1, MAX_COUNT),
    "metrics_max_tasks": _count(1, MAX_COUNT),
    "scan_interval": _duration(allow_zero=False),
    "lease_seconds": _duration(allow_zero=False),
    "shutdown_grace_seconds": _duration(allow_zero=True),
    "result_ttl_seconds": _duration(allow_zero=True),
    "log_level": _log_level,
    "app_modules": _module_names,
}


def _checked(loaded: Settings, from_env: dict[str, str] | None = None) -> Settings:
    """Refuse a setting out of its range now, naming where it came from (the environment
    variable when `from_env` holds it), rather than misbehave later where it is used."""
    for name, check in _CHECKS.items():
        try:
            setattr(loaded, name, check(getattr(loaded, name), name))
        except InvalidJobError as exc:
            if from_env and name in from_env:
                default = getattr(type(loaded), name)
                raise ConfigurationError(
                    f"{_ENV_PREFIX}{name.upper()}={from_env[name]!r}: {exc} "
                    f"(or unset it for the default, {default})"
                ) from None
            raise ConfigurationError(f"settings: {exc}") from None
    return loaded


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if environ is None else environ
    path = env.get(f"{_ENV_PREFIX}SETTINGS_MODULE")
    loaded = (_load_class(path) if path else Settings)()
    from_env: dict[str, str] = {}
    for name, annotation in loaded.field_names().items():
        raw = env.get(f"{_ENV_PREFIX}{name.upper()}")
        if raw is not None:
            setattr(loaded, name, _convert(name, annotation, raw))
            from_env[name] = raw
    return _checked(loaded, from_env)


class _LazySettings:
    """Reads settings on first attribute access, so importing asyncmq reads no environment."""

    _wrapped: Settings | None = None

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._loaded(), name)
        if not name.startswith("_"):
            self.__dict__[name] = value  # later reads skip this method: hot paths read settings
        return value

    def _loaded(self) -> Settings:
        if self._wrapped is None:
            self._wrapped = load_settings()
        return self._wrapped

    def configure(self, new: Settings | None) -> None:
        if new is not None:
            _checked(new)
        for name in [name for name in self.__dict__ if not name.startswith("_")]:
            del self.__dict__[name]
        self._wrapped = new


settings: Settings = _LazySettings()  # type: ignore[assignment]


def configure(new: Settings | None = None) -> None:
    """Replace the active settings (`None` reloads them from the environment on next use)."""
    settings.configure(new)  # type: ignore[attr-defined]


def active_settings() -> Settings:
    """The settings object in force (loaded now if not yet): a new one after `configure()`."""
    return settings._loaded()  # type: ignore[attr-defined,no-any-return]
