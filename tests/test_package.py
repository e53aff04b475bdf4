"""The package's public surface: complete, sorted exports and no optional import at load."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys

import asyncmq

OPTIONAL = (
    "redis",
    "asyncpg",
    "motor",
    "pymongo",
    "prometheus_client",
    "opentelemetry",
    "matplotlib",
    "rich.progress",
)


def test_importing_asyncmq_imports_no_optional_dependency() -> None:
    code = f"import sys, asyncmq, asyncmq.cli.main; print([m for m in {OPTIONAL!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def _isort_key(name: str) -> tuple[int, str]:
    """The order ruff's RUF022 keeps: CONSTANTS, then Classes, then functions."""
    return (0 if name.isupper() else 1 if name[:1].isupper() else 2, name)


def test_every_module_declares_a_sorted_all_naming_only_what_exists() -> None:
    for info in pkgutil.walk_packages(asyncmq.__path__, "asyncmq."):
        module = importlib.import_module(info.name)
        if info.ispkg and not hasattr(module, "__all__"):
            continue
        exported = getattr(module, "__all__", None)
        assert exported is not None, f"{info.name} has no __all__"
        assert list(exported) == sorted(exported, key=_isort_key), f"{info.name}.__all__ is not sorted"
        missing = [name for name in exported if not hasattr(module, name)]
        assert not missing, f"{info.name}.__all__ names missing {missing}"


def test_the_top_level_package_exports_the_public_api() -> None:
    assert {"Queue", "Worker", "task", "event_emitter", "Event", "Job", "JobState"} <= set(asyncmq.__all__)
