"""The Alertmanager configuration: valid, routing pages and tickets apart, and muting a queue's
symptoms while its no-worker page fires (checked against a real Alertmanager)."""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from asyncmq.observability.alerts import ALERTS
from tests.alerts.conftest import ROOT

CONFIG = ROOT / "exporters" / "alertmanager.yml"
#: How long Alertmanager may take to start and to apply an inhibition.
WAIT_S = 20.0


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=60)


def test_amtool_accepts_the_configuration(amtool: str) -> None:
    result = _run(amtool, "check-config", str(CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(("severity", "receiver"), [("critical", "page"), ("warning", "ticket")])
def test_critical_alerts_page_and_warnings_open_tickets(amtool: str, severity: str, receiver: str) -> None:
    labels = [f"severity={severity}", "alertname=AsyncMQNoWorkers", "queue=emails"]
    result = _run(amtool, "config", "routes", "test", f"--config.file={CONFIG}", *labels)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.split() == [receiver]


def test_the_inhibition_names_alerts_that_exist() -> None:
    (rule,) = yaml.safe_load(CONFIG.read_text())["inhibit_rules"]
    names = {alert.name for alert in ALERTS}
    assert rule["source_matchers"] == ['alertname="AsyncMQNoWorkers"']
    (target,) = rule["target_matchers"]
    inhibited = target.removeprefix('alertname=~"').removesuffix('"').split("|")
    assert set(inhibited) <= names
    assert rule["equal"] == ["queue"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def alertmanager_url(alertmanager: str, tmp_path: Path) -> Iterator[str]:
    """A real Alertmanager on loopback with the committed configuration."""
    port = _free_port()
    command = [
        alertmanager,
        f"--config.file={CONFIG}",
        f"--storage.path={tmp_path}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
    ]
    with subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as process:
        url = f"http://127.0.0.1:{port}"
        try:
            _until(lambda: _get(f"{url}/-/ready") is not None)
            yield url
        finally:
            process.terminate()
            process.wait(timeout=10)


def _get(url: str) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            body = response.read()
    except OSError:
        return None
    return json.loads(body) if body.startswith((b"[", b"{")) else body


def _until(condition: Any) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def _post_alerts(url: str, alerts: list[dict[str, str]]) -> None:
    body = json.dumps([{"labels": labels} for labels in alerts]).encode()
    request = urllib.request.Request(
        f"{url}/api/v2/alerts", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200


@pytest.mark.slow
def test_a_queue_without_workers_mutes_its_own_depth_warning_and_no_other(alertmanager_url: str) -> None:
    _post_alerts(
        alertmanager_url,
        [
            {"alertname": "AsyncMQNoWorkers", "severity": "critical", "queue": "emails"},
            {"alertname": "AsyncMQQueueDepthHigh", "severity": "warning", "queue": "emails"},
            {"alertname": "AsyncMQQueueDepthHigh", "severity": "warning", "queue": "reports"},
            {"alertname": "AsyncMQRetryRatioHigh", "severity": "warning", "queue": "emails"},
        ],
    )

    def states() -> dict[tuple[str, str], str]:
        alerts = _get(f"{alertmanager_url}/api/v2/alerts") or []
        return {(a["labels"]["alertname"], a["labels"]["queue"]): a["status"]["state"] for a in alerts}

    _until(lambda: states().get(("AsyncMQQueueDepthHigh", "emails")) == "suppressed")
    assert states() == {
        ("AsyncMQNoWorkers", "emails"): "active",
        ("AsyncMQQueueDepthHigh", "emails"): "suppressed",
        ("AsyncMQQueueDepthHigh", "reports"): "active",
        ("AsyncMQRetryRatioHigh", "emails"): "active",
    }
