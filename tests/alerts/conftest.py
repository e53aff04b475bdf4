"""Fixtures of the alerting tests: the Prometheus and Alertmanager command-line tools, skipped
where they are not installed and required in CI (`scripts/services.sh` installs them)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

#: The checkout: the committed rules, tests, runbooks and Alertmanager configuration.
ROOT = Path(__file__).resolve().parents[2]


def _tool(*names: str) -> str:
    for name in names:
        path = shutil.which(name)
        if path is not None:
            return path
    message = f"{names[0]} is not installed (scripts/services.sh installs it)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture
def promtool() -> str:
    return _tool("promtool")


@pytest.fixture
def amtool() -> str:
    return _tool("amtool")


@pytest.fixture
def alertmanager() -> str:
    return _tool("alertmanager", "prometheus-alertmanager")
