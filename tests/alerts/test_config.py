"""The thresholds file: what it tunes, how per-queue thresholds split the alerts (checked by
promtool on a generated rule file), and errors that name the key at fault."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from asyncmq.errors import ConfigurationError
from asyncmq.observability.alerts import AlertConfig, Limit, render_rules

OVERRIDES = """
interval = "1m"
grafana_url = "https://ops.example.com/grafana/"

[defaults.queue_depth]
for = "10m"

[queues.emails.queue_depth]
threshold = 5000
for = "5m"

[queues."mail.out".queue_depth]
threshold = 10
"""


def _load(tmp_path: Path, text: str) -> AlertConfig:
    path = tmp_path / "thresholds.toml"
    path.write_text(text)
    return AlertConfig.load(path)


def _depth_rules(config: AlertConfig) -> list[dict[str, Any]]:
    rules = yaml.safe_load(render_rules(config))["groups"][0]["rules"]
    return [rule for rule in rules if rule.get("alert") == "AsyncMQQueueDepthHigh"]


def test_no_file_means_the_defaults_an_operator_expects() -> None:
    config = AlertConfig.load(None)
    assert config.limit("queue_depth") == Limit(1000, "10m")
    assert config.limit("oldest_job_age") == Limit(300, "5m")
    assert config.limit("retry_ratio") == Limit(0.1, "15m", min_rate_per_s=0.01)
    assert config.limit("failure_ratio") == Limit(0.05, "15m", min_rate_per_s=0.01)
    assert config.limit("no_workers").for_ == "2m"
    assert config.limit("target_down").for_ == "5m"
    assert config.grafana_url == "https://grafana.example.com"
    assert config == AlertConfig()


def test_a_queue_override_keeps_what_it_leaves_out_from_the_defaults(tmp_path: Path) -> None:
    text = '[defaults.oldest_job_age]\nfor = "15m"\n[queues.emails.oldest_job_age]\nthreshold = 60\n'
    config = _load(tmp_path, text)
    assert config.limit("oldest_job_age", "emails") == Limit(60, "15m")
    assert config.limit("oldest_job_age", "reports") == Limit(300, "15m")
    assert config.limit("queue_depth", "emails") == Limit(1000, "10m")


def test_an_overridden_queue_gets_its_own_rule_and_the_default_rule_leaves_it_out(tmp_path: Path) -> None:
    rules = _depth_rules(_load(tmp_path, OVERRIDES))
    assert [rule["expr"] for rule in rules] == [
        'queue:asyncmq_queue_jobs_waiting:max{queue!~"emails|mail\\\\.out"} > 1000',
        'queue:asyncmq_queue_jobs_waiting:max{queue="emails"} > 5000',
        'queue:asyncmq_queue_jobs_waiting:max{queue="mail.out"} > 10',
    ]
    assert [rule["for"] for rule in rules] == ["10m", "5m", "10m"]


def test_both_links_and_the_interval_come_from_the_file(tmp_path: Path) -> None:
    config = _load(tmp_path, OVERRIDES)
    group = yaml.safe_load(render_rules(config))["groups"][0]
    annotations = _depth_rules(config)[0]["annotations"]
    assert group["interval"] == "1m"
    assert (
        annotations["runbook_url"] == "https://ops.example.com/grafana/d/asyncmq-runbooks?viewPanel=panel-1"
    )
    assert annotations["dashboard_url"] == (
        "https://ops.example.com/grafana/d/asyncmq-queue?var-queue={{ $labels.queue }}"
    )


def _depth_alert(queue: str, threshold: int, for_: str) -> dict[str, Any]:
    return {
        "exp_labels": {"severity": "warning", "queue": queue},
        "exp_annotations": {
            "summary": f"Queue {queue} has 6k jobs waiting",
            "description": (
                f"6k jobs are waiting in queue {queue}, more than {threshold} for {for_}: "
                "the workers are not keeping up."
            ),
            "runbook_url": "https://ops.example.com/grafana/d/asyncmq-runbooks?viewPanel=panel-1",
            "dashboard_url": f"https://ops.example.com/grafana/d/asyncmq-queue?var-queue={queue}",
        },
    }


def _waiting(queue: str, values: str) -> dict[str, str]:
    labels = f'job="asyncmq-exporter",instance="exporter:9101",queue="{queue}",state="waiting"'
    series = f"asyncmq_queue_jobs{{{labels}}}"
    return {"series": series, "values": values}


def test_promtool_judges_each_queue_once_by_its_own_threshold(tmp_path: Path, promtool: str) -> None:
    (tmp_path / "rules.yml").write_text(render_rules(_load(tmp_path, OVERRIDES)))
    # emails: under its own 5000 until 5m, above it after. mail.out: above its 10.
    # mailXout: a name the regex `mail\.out` must not swallow, judged by the default 1000.
    # reports: judged by the default, under it.
    tests = {
        "rule_files": ["rules.yml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    _waiting("emails", "3000x4 6000x20"),
                    _waiting("mail.out", "6000x20"),
                    _waiting("mailXout", "6000x20"),
                    _waiting("reports", "900x20"),
                ],
                "alert_rule_test": [
                    {"eval_time": "9m", "alertname": "AsyncMQQueueDepthHigh", "exp_alerts": []},
                    {
                        "eval_time": "10m",
                        "alertname": "AsyncMQQueueDepthHigh",
                        "exp_alerts": [
                            _depth_alert("emails", 5000, "5m"),
                            _depth_alert("mail.out", 10, "10m"),
                            _depth_alert("mailXout", 1000, "10m"),
                        ],
                    },
                ],
            }
        ],
    }
    (tmp_path / "rules.test.yml").write_text(yaml.safe_dump(tests, sort_keys=False))
    result = subprocess.run(
        [promtool, "test", "rules", "rules.test.yml"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("treshold = 1\n", r"unknown key treshold \(known at the top: defaults, grafana_url, interval, "),
        ('runbook_base = "https://x.example.com"\n', r"unknown key runbook_base \(known at the top: "),
        (
            "[defaults.queue_dept]\nthreshold = 1\n",
            r"unknown key defaults\.queue_dept \(known under defaults: ",
        ),
        (
            "[defaults.queue_depth]\ntreshold = 1\n",
            r"unknown key defaults\.queue_depth\.treshold \(known under ",
        ),
        (
            "[defaults.queue_depth]\nmin_rate_per_s = 1\n",
            r"unknown key defaults\.queue_depth\.min_rate_per_s",
        ),
        ("[queues.emails.queue_dept]\nthreshold = 1\n", r"unknown key queues\.emails\.queue_dept "),
        ("[defaults]\nq = 1\nr = 2\n", r"unknown keys defaults\.q, defaults\.r "),
        (
            '[defaults.queue_depth]\nfor = "10 minutes"\n',
            r"defaults\.queue_depth\.for = '10 minutes' is not a Prometheus duration",
        ),
        (
            "[defaults.queue_depth]\nfor = 600\n",
            r"defaults\.queue_depth\.for = 600 is not a Prometheus duration",
        ),
        ('interval = "0s"\n', r"interval must be longer than 0s"),
        (
            '[defaults.queue_depth]\nthreshold = "lots"\n',
            r"defaults\.queue_depth\.threshold = 'lots' must be a number",
        ),
        ("[defaults.queue_depth]\nthreshold = -1\n", r"threshold = -1 must be a number, 0 or more"),
        (
            "[defaults.retry_ratio]\nthreshold = 10\n",
            r"retry_ratio\.threshold = 10\.0 is a ratio from 0 to 1",
        ),
        ('[queues.emails.target_down]\nfor = "1m"\n', r"queues\.emails\.target_down is not per queue"),
        ("[queues.'bad name'.queue_depth]\nthreshold = 1\n", r"invalid queue name 'bad name'"),
        ("[defaults]\nqueue_depth = 5\n", r"defaults\.queue_depth must be a table, not 5"),
        ("grafana_url = 3\n", r"grafana_url = 3 must be an absolute http:// or https:// URL"),
        ('grafana_url = "grafana.example.com"\n', r"grafana_url = 'grafana.example.com' must be an absolute"),
        ('grafana_url = "/grafana"\n', r"grafana_url = '/grafana' must be an absolute http"),
        ('grafana_url = "ftp://grafana.example.com"\n', r"grafana_url = 'ftp://grafana.example.com' must be"),
        ('grafana_url = "https://"\n', r"grafana_url = 'https://' must be an absolute"),
        ('grafana_url = "https://g.example.com/?orgId=1"\n', r"without a query or fragment"),
        ("[defaults\n", r" is not valid TOML"),
    ],
)
def test_a_mistake_in_the_file_is_an_error_naming_the_file_and_the_key(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(ConfigurationError, match=r"thresholds\.toml.*" + message):
        _load(tmp_path, text)


def test_a_missing_file_is_an_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"cannot read the alert thresholds file .*absent\.toml"):
        AlertConfig.load(tmp_path / "absent.toml")


def test_the_readme_example_is_a_valid_thresholds_file(tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    example = readme.split("## Alerts", 1)[1].split("```toml\n", 1)[1].split("```", 1)[0]
    config = _load(tmp_path, example)
    assert config.grafana_url == "https://grafana.internal.example.org"
    assert config.limit("queue_depth") == Limit(5000, "15m")
