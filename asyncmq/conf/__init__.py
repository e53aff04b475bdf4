"""The active settings: `from asyncmq.conf import settings`.

Loaded on first use from `ASYNCMQ_SETTINGS_MODULE` ("package.module.Settings" or
"package.module:Settings"), else the defaults, then `ASYNCMQ_*` environment variables.
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any

from asyncmq.conf.global_settings import Settings
from asyncmq.errors import ConfigurationError

if TYPE_CHECKING:
    from asyncmq.backends.base import BaseBackend

__all__ = ["Settings", "configure", "get_backend", "settings"]

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
    except ValueError as exc:
        raise ConfigurationError(
            f"{_ENV_PREFIX}{name.upper()}={raw!r} is not a valid {kind}: {exc}"
        ) from None
    return raw


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    env = os.environ if environ is None else environ
    path = env.get(f"{_ENV_PREFIX}SETTINGS_MODULE")
    loaded = (_load_class(path) if path else Settings)()
    for name, annotation in loaded.field_names().items():
        raw = env.get(f"{_ENV_PREFIX}{name.upper()}")
        if raw is not None:
            setattr(loaded, name, _convert(name, annotation, raw))
    return loaded


def _instrument(loaded: Settings) -> None:
    """Settings that ask for observability turn the plugin on as soon as they are loaded.
    The plugin is imported only then: the engine itself never depends on it."""
    if loaded.metrics or loaded.tracing:
        from asyncmq.observability import instrument_from_settings

        instrument_from_settings(loaded)


class _LazySettings:
    """Reads settings on first attribute access, so importing asyncmq reads no environment."""

    _wrapped: Settings | None = None
    _backend: BaseBackend | None = None

    def __getattr__(self, name: str) -> Any:
        if self._wrapped is None:
            self._wrapped = load_settings()
            _instrument(self._wrapped)
        value = getattr(self._wrapped, name)
        if not name.startswith("_"):
            self.__dict__[name] = value  # later reads skip this method: hot paths read settings
        return value

    def configure(self, new: Settings | None) -> None:
        for name in [name for name in self.__dict__ if not name.startswith("_")]:
            del self.__dict__[name]
        self._wrapped = new
        self._backend = None


settings: Settings = _LazySettings()  # type: ignore[assignment]


def configure(new: Settings | None = None) -> None:
    """Replace the active settings (`None` reloads them from the environment on next use)."""
    settings.configure(new)  # type: ignore[attr-defined]


def get_backend() -> BaseBackend:
    """The settings' backend, built once from its URL when given as one, then shared."""
    from asyncmq.backends import backend_from_url

    lazy: _LazySettings = settings  # type: ignore[assignment]
    if lazy._backend is None:
        value = settings.backend
        lazy._backend = backend_from_url(value) if isinstance(value, str) else value
    return lazy._backend
