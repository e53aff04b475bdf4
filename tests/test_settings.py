"""Settings: defaults, a settings class chosen by ASYNCMQ_SETTINGS_MODULE, typed env overrides."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from asyncmq.backends.memory import InMemoryBackend
from asyncmq.conf import configure, load_settings, settings
from asyncmq.conf.global_settings import Settings
from asyncmq.errors import ConfigurationError
from asyncmq.runtime import default_backend


def test_defaults_use_the_in_memory_backend_shared_by_every_queue() -> None:
    assert settings.backend == "memory://"
    backend = default_backend()
    assert isinstance(backend, InMemoryBackend)
    assert default_backend() is backend


def test_environment_variables_override_fields_with_their_types() -> None:
    loaded = load_settings(
        {"ASYNCMQ_SCAN_INTERVAL": "0.25", "ASYNCMQ_WORKER_CONCURRENCY": "7", "ASYNCMQ_BACKEND": "memory://x"}
    )
    assert loaded.scan_interval == 0.25
    assert loaded.worker_concurrency == 7
    assert loaded.backend == "memory://x"


def test_a_badly_typed_environment_variable_is_named_in_the_error() -> None:
    with pytest.raises(ConfigurationError, match="ASYNCMQ_WORKER_CONCURRENCY='many' is not a valid int"):
        load_settings({"ASYNCMQ_WORKER_CONCURRENCY": "many"})


def test_a_settings_module_is_loaded_and_the_environment_still_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "my_settings.py").write_text(
        textwrap.dedent(
            """
            from asyncmq.conf.global_settings import Settings


            class Production(Settings):
                scan_interval: float = 0.2
                worker_concurrency: int = 50
                tenant: str = "acme"
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    loaded = load_settings(
        {"ASYNCMQ_SETTINGS_MODULE": "my_settings:Production", "ASYNCMQ_SCAN_INTERVAL": "0.5"}
    )
    assert (loaded.scan_interval, loaded.worker_concurrency, loaded.tenant) == (0.5, 50, "acme")  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("nowhere.Settings", "cannot be loaded"),
        ("asyncmq.job.Job", "is not a subclass of Settings"),
        ("Settings", "must name a class"),
    ],
)
def test_a_wrong_settings_module_says_what_is_wrong(path: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        load_settings({"ASYNCMQ_SETTINGS_MODULE": path})


def test_an_unknown_setting_is_refused() -> None:
    with pytest.raises(AttributeError, match="has no setting 'scan_intervall'"):
        Settings(scan_intervall=1)


def test_configure_replaces_the_active_settings_and_their_backend() -> None:
    backend = InMemoryBackend()
    configure(Settings(backend=backend, scan_interval=3.0))
    assert settings.scan_interval == 3.0
    assert default_backend() is backend


def test_an_unknown_backend_url_names_the_known_schemes() -> None:
    configure(Settings(backend="kafka://localhost"))
    with pytest.raises(
        ConfigurationError, match="unsupported backend URL 'kafka://localhost': known schemes"
    ):
        default_backend()
