"""exporters/prometheus.yml against the compose file: every target is a service listening on
that port, the rule files are the mounted alerts, and promtool accepts the whole."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from fnmatch import fnmatch
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from tests.stack.support import ROOT, address, command, host_path, listening_ports, load_yaml, option

CONFIG = ROOT / "exporters" / "prometheus.yml"
RULES = ROOT / "alerts" / "asyncmq.rules.yml"


def _config() -> dict[str, Any]:
    loaded: dict[str, Any] = load_yaml(CONFIG)
    return loaded


def _targets() -> list[tuple[str, str, int]]:
    """(job, host, port) of every static and DNS-discovered scrape target."""
    found = []
    for job in _config()["scrape_configs"]:
        for static in job.get("static_configs", []):
            found += [(job["job_name"], *address(target)) for target in static["targets"]]
        for dns in job.get("dns_sd_configs", []):
            found += [(job["job_name"], name, dns["port"]) for name in dns["names"]]
    return found


def _config_dir() -> PurePosixPath:
    """Where Prometheus reads the config from inside its container: relative paths start there."""
    config_file = option(command("prometheus"), "--config.file")
    assert config_file is not None
    assert host_path("prometheus", config_file) == CONFIG
    return PurePosixPath(config_file).parent


@pytest.mark.parametrize(("job", "host", "port"), _targets())
def test_every_scrape_target_is_a_service_listening_on_that_port(job: str, host: str, port: int) -> None:
    assert port in listening_ports(host), f"job {job}: {host} does not listen on {port}"


def test_the_asyncmq_jobs_scrape_the_workers_and_the_exporter() -> None:
    by_job = {(job, host, port) for job, host, port in _targets()}
    assert ("asyncmq-workers", "worker", 9100) in by_job
    assert ("asyncmq-exporter", "exporter", 9101) in by_job
    assert any(job == "prometheus" for job, _, _ in by_job)


def test_evaluation_and_scrape_run_every_15_seconds() -> None:
    assert _config()["global"] == {"scrape_interval": "15s", "evaluation_interval": "15s"}


def test_the_rule_files_are_the_alert_rules_compose_mounts() -> None:
    config_dir = _config_dir()
    for pattern in _config()["rule_files"]:
        in_container = config_dir / pattern
        mounted = host_path("prometheus", str(in_container.parent))
        assert mounted == ROOT / "alerts", f"{in_container} is not in the mounted alerts/"
        assert fnmatch(RULES.name, in_container.name), f"{pattern} leaves out {RULES.name}"


def test_alerts_go_to_the_alertmanager_service() -> None:
    targets = [
        address(target)
        for alertmanager in _config()["alerting"]["alertmanagers"]
        for static in alertmanager["static_configs"]
        for target in static["targets"]
    ]
    assert targets == [("alertmanager", 9093)]
    assert 9093 in listening_ports("alertmanager")


def test_alertmanager_reads_the_config_compose_mounts() -> None:
    config_file = option(command("alertmanager"), "--config.file")
    assert config_file is not None
    assert host_path("alertmanager", config_file) == ROOT / "exporters" / "alertmanager.yml"


def test_prometheus_stores_exemplars() -> None:
    flags = [option([arg], "--enable-feature") for arg in command("prometheus")]
    assert any("exemplar-storage" in (flag or "").split(",") for flag in flags)


def test_promtool_accepts_the_config_with_the_alert_rules(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is not installed")
        pytest.skip("promtool is not installed")
    assert RULES.is_file(), f"{RULES.relative_to(ROOT)} has not been generated"
    # The same layout as in the container: the config, with alerts/ beside it.
    shutil.copy(CONFIG, tmp_path / "prometheus.yml")
    shutil.copytree(ROOT / "alerts", tmp_path / "alerts")
    result = subprocess.run(
        [promtool, "check", "config", str(tmp_path / "prometheus.yml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    found = re.search(r"(\d+) rule files? found", output)
    assert found is not None, output
    assert int(found.group(1)) >= 1, output
