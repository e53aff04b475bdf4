"""Settings: defaults, a settings class chosen by ASYNCMQ_SETTINGS_MODULE, typed env overrides."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from asyncmq.backends.memory import InMemoryBackend
from asyncmq.conf import configure, load_settings, settings
from asyncmq.conf.global_settings import Settings
from asyncmq.errors import ConfigurationError, InvalidJobError
from asyncmq.limits import MAX_COUNT
from asyncmq.queues import Queue
from asyncmq.runtime import default_backend
from asyncmq.transitions import DEFAULT_RETENTION, Retention


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
    with pytest.raises(ConfigurationError, match="has no setting 'scan_intervall'"):
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


# -- AsyncMQ's field names -------------------------------------------------------------------


def _settings_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str) -> str:
    """A settings module holding `class AppSettings(Settings)` with `body`; its dotted path."""
    name = f"app_settings_{abs(hash(body))}"
    header = (
        "import json\n\nfrom asyncmq.conf.global_settings import Settings\n\n\nclass AppSettings(Settings):\n"
    )
    (tmp_path / f"{name}.py").write_text(header + textwrap.indent(textwrap.dedent(body), "    "))
    monkeypatch.syspath_prepend(str(tmp_path))
    return f"{name}.AppSettings"


def test_a_settings_class_written_with_asyncmqs_field_names_is_honoured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _settings_module(
        tmp_path,
        monkeypatch,
        """
        backend = "memory://app"
        worker_concurrency = 4
        scan_interval = 0.5
        logging_level = "DEBUG"
        max_job_payload_bytes = 2048
        tracing_enabled = True
        enable_stalled_check = True
        stalled_threshold = 12.0
        tasks: list[str] = ["myproject.tasks", "myproject.scheduled_jobs"]
        debug = False
        json_dumps = json.dumps
        json_loads = json.loads
        """,
    )
    loaded = load_settings({"ASYNCMQ_SETTINGS_MODULE": path})
    assert (loaded.backend, loaded.worker_concurrency, loaded.scan_interval) == ("memory://app", 4, 0.5)
    assert (loaded.log_level, loaded.max_payload_bytes, loaded.tracing) == ("debug", 2048, True)
    assert loaded.lease_seconds == 12.0
    assert loaded.app_modules == ("myproject.tasks", "myproject.scheduled_jobs")


def test_max_job_payload_bytes_is_the_limit_the_producer_enforces() -> None:
    configure(Settings(backend=InMemoryBackend(), max_job_payload_bytes=64))
    queue = Queue("payloads")
    with pytest.raises(InvalidJobError, match="64"):
        queue.build_job("app.task", ["x" * 100])
    queue.build_job("app.task", ["x" * 10])


def test_max_job_payload_bytes_none_means_no_limit_and_a_negative_one_is_refused() -> None:
    assert Settings(max_job_payload_bytes=None).max_payload_bytes == MAX_COUNT
    with pytest.raises(ConfigurationError, match="max_job_payload_bytes"):
        Settings(max_job_payload_bytes=-1)


def test_the_environment_still_wins_over_an_asyncmq_field_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _settings_module(tmp_path, monkeypatch, "max_job_payload_bytes = 2048\n")
    loaded = load_settings({"ASYNCMQ_SETTINGS_MODULE": path, "ASYNCMQ_MAX_PAYLOAD_BYTES": "4096"})
    assert loaded.max_payload_bytes == 4096


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "worker_concurency = 8\n",
            "AppSettings has no setting 'worker_concurency'; did you mean 'worker_concurrency'",
        ),
        (
            "worker_concurency: int = 8\n",
            "AppSettings has no setting 'worker_concurency'; did you mean 'worker_concurrency'",
        ),
        ("max_payload_byte = 10\n", "did you mean 'max_payload_bytes'"),
        ("tracing_enable = True\n", "did you mean 'tracing_enabled'"),
        ("colour = 'blue'\n", "AppSettings has no setting 'colour'; a setting of your own needs a type"),
    ],
)
def test_an_unknown_field_in_a_settings_class_is_refused_at_load_with_the_closest_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str, message: str
) -> None:
    path = _settings_module(tmp_path, monkeypatch, body)
    with pytest.raises(ConfigurationError, match=message):
        load_settings({"ASYNCMQ_SETTINGS_MODULE": path})


def test_a_setting_of_ones_own_declared_with_a_type_and_methods_are_not_fields(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _settings_module(
        tmp_path,
        monkeypatch,
        """
        region: str = "eu"

        def describe(self) -> str:
            return self.region

        @property
        def label(self) -> str:
            return "app"
        """,
    )
    loaded = load_settings({"ASYNCMQ_SETTINGS_MODULE": path})
    assert (loaded.region, loaded.describe(), loaded.label) == ("eu", "eu", "app")  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("json_dumps = lambda value: json.dumps(value, default=str)\n", "json_dumps.*cannot be honoured"),
        ("json_loads = lambda text: json.loads(text)\n", "json_loads.*cannot be honoured"),
        ("enable_stalled_check = False\n", "enable_stalled_check.*always recovered.*lease_seconds"),
        ("stalled_check_interval = 10.0\n", "stalled_check_interval.*lease_seconds / 2"),
        ("heartbeat_ttl = 60\n", "heartbeat_ttl.*lease_seconds"),
        ("secret_key = 's3cret'\n", "secret_key.*no web dashboard"),
        ("debug = True\n", "debug.*log_level = 'debug'"),
        ("sandbox_enabled = True\n", "sandbox_enabled.*no sandbox"),
        ("worker_on_startup = [print]\n", "worker_on_startup.*worker:started"),
        ("asyncmq_postgres_backend_url = 'postgresql://db/app'\n", "backend = 'postgresql://"),
        ("tracing_span_prefix = 'jobs'\n", "tracing_span_prefix.*span names"),
    ],
)
def test_an_asyncmq_field_that_cannot_mean_the_same_here_is_refused_saying_why_and_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str, message: str
) -> None:
    path = _settings_module(tmp_path, monkeypatch, body)
    with pytest.raises(ConfigurationError, match=message):
        load_settings({"ASYNCMQ_SETTINGS_MODULE": path})


def test_both_names_of_one_setting_with_different_values_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _settings_module(tmp_path, monkeypatch, "max_payload_bytes = 100\nmax_job_payload_bytes = 200\n")
    with pytest.raises(ConfigurationError, match=r"max_job_payload_bytes.*max_payload_bytes.*one of them"):
        load_settings({"ASYNCMQ_SETTINGS_MODULE": path})


def test_asyncmq_field_names_are_honoured_as_keyword_overrides_too() -> None:
    configure(
        Settings(stalled_threshold=5.0, tracing_enabled=True, tasks=["app.tasks"], logging_level="ERROR")
    )
    assert (settings.lease_seconds, settings.tracing) == (5.0, True)
    assert (settings.app_modules, settings.log_level) == (("app.tasks",), "error")
    with pytest.raises(ConfigurationError, match="did you mean 'scan_interval'"):
        Settings(scan_intervall=1)


def test_unprefixed_environment_variables_are_not_read() -> None:
    loaded = load_settings({"WORKER_CONCURRENCY": "8", "DEBUG": "true", "SCAN_INTERVAL": "0.5"})
    assert (loaded.worker_concurrency, loaded.scan_interval) == (
        Settings.worker_concurrency,
        Settings.scan_interval,
    )


def test_app_modules_and_log_level_come_from_the_environment_too() -> None:
    loaded = load_settings({"ASYNCMQ_APP_MODULES": "app.tasks, app.jobs", "ASYNCMQ_LOG_LEVEL": "WARNING"})
    assert (loaded.app_modules, loaded.log_level) == (("app.tasks", "app.jobs"), "warning")
    with pytest.raises(ConfigurationError, match="ASYNCMQ_LOG_LEVEL='loud'"):
        load_settings({"ASYNCMQ_LOG_LEVEL": "loud"})


def test_the_backends_default_retention_is_the_settings_default() -> None:
    """What keeps the children a removal failed when a backend is called without a queue."""
    assert Retention(Settings.result_ttl_seconds, Settings.keep_finished_jobs) == DEFAULT_RETENTION
