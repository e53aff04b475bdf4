"""The root command: version, error reporting, backend choice and `--app`."""

from __future__ import annotations

import json

import pytest

from asyncmq.backends.memory import InMemoryBackend
from tests.cli.helpers import invoke


def test_version_prints_the_package_version() -> None:
    result = invoke("--version")
    assert (result.exit_code, result.output) == (0, "asyncmq, version 0.1.0\n")


def test_a_configuration_error_is_shown_as_one_line_and_exits_3() -> None:
    result = invoke("info", "--backend", "nosuch://host")
    assert result.exit_code == 3
    assert result.output.startswith(
        "Error: unsupported backend URL 'nosuch://host': known schemes are memory://"
    )
    assert result.output.count("\n") == 1


def test_the_backend_comes_from_the_asyncmq_backend_variable_without_a_flag(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ASYNCMQ_BACKEND", "fromenv://x")
    result = invoke("queue", "list")
    assert result.exit_code == 3
    assert result.output.startswith("Error: unsupported backend URL 'fromenv://x': known schemes are")


def test_the_backend_flag_wins_over_the_settings(backend: InMemoryBackend) -> None:
    result = invoke("info", "--backend", "memory://", "--json")
    assert result.exit_code == 0, result.output
    assert '"queues": []' in result.stdout


def test_an_app_module_that_cannot_be_imported_is_a_usage_error_naming_it() -> None:
    result = invoke("queue", "list", "--app", "no_such_module_for_asyncmq")
    assert result.exit_code == 2
    assert (
        "Error: Invalid value for '--app': cannot import 'no_such_module_for_asyncmq': "
        "ModuleNotFoundError: No module named 'no_such_module_for_asyncmq'"
    ) in result.output


def test_an_app_module_is_imported_before_the_command_runs(backend: InMemoryBackend) -> None:
    result = invoke("queue", "list", "--app", "tests.cli.app", "--app", "json", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"backend": "memory://", "queues": []}


def test_an_invalid_queue_name_is_a_usage_error() -> None:
    result = invoke("queue", "pause", "no spaces")
    assert result.exit_code == 2
    assert "Invalid value for 'NAME': invalid queue name 'no spaces'" in result.output
