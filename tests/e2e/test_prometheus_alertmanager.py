"""The observability story end to end, with real servers on loopback: a worker and the
standalone exporter scraped by a real Prometheus that loads the generated rules; after a
workload, every panel query of both generated dashboards returns data through Prometheus'
HTTP API; then the worker stops while jobs keep arriving, and the no-worker page goes through
a real Alertmanager, routed by exporters/alertmanager.yml, to the paging webhook.

The deployment's own files are used, changed only where this machine differs from the
compose network: loopback targets instead of service names, one-second intervals and a
three-second `for:` instead of minutes, so the test runs in seconds."""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from asyncmq.backends.redis import RedisBackend
from asyncmq.backoff import Backoff
from asyncmq.observability.alerts import DEFAULT_GRAFANA_URL, AlertConfig, render_rules, runbook_panel_id
from asyncmq.observability.grafana import panel_queries
from asyncmq.queues import Queue
from tests.e2e.servers import (
    Prometheus,
    Server,
    WebhookReceiver,
    need_binary,
    running_server,
    webhook_receiver,
)
from tests.observability.app import always_fails, fails_once, fails_with, ok, sleeps
from tests.observability.support import REDIS_URL, ROOT, asyncmq_process, finish, free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

RATE_WINDOW = "1m"  # `$__rate_interval` at a one-second scrape interval: the workload fits in it
NO_WORKERS_FOR_S = 3


@pytest.fixture
def queue_name() -> str:
    return f"e2e-{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def queue(queue_name: str) -> AsyncIterator[Queue]:
    backend = RedisBackend(REDIS_URL)
    yield Queue(queue_name, backend=backend)
    keys = [key async for key in backend.client.scan_iter(match=f"asyncmq:{{{queue_name}}}:*")]
    if keys:
        await backend.client.delete(*keys)
    await backend.client.srem("asyncmq:queues", queue_name)
    await backend.close()


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with webhook_receiver() as server:
        yield server


@pytest.fixture
def alertmanager(tmp_path: Path, receiver: WebhookReceiver) -> Iterator[Server]:
    binary = need_binary("prometheus-alertmanager")
    config = yaml.safe_load((ROOT / "exporters" / "alertmanager.yml").read_text())
    for webhook in (hook for r in config["receivers"] for hook in r.get("webhook_configs", [])):
        webhook["url"] = receiver.url + urlsplit(webhook["url"]).path  # /page, /ticket
    for route in [config["route"], *config["route"].get("routes", [])]:
        route.update(group_wait="1s", group_interval="1s")
    path = tmp_path / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config))
    port = free_port()
    argv = [
        binary, f"--config.file={path}", f"--storage.path={tmp_path / 'alertmanager-data'}",
        f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=",
    ]  # fmt: skip
    with running_server(Server, argv, port, tmp_path / "alertmanager.log", "/-/ready") as server:
        yield server


def prometheus_config(rules: Path, alertmanager: Server, targets: dict[str, int]) -> dict[str, Any]:
    """exporters/prometheus.yml with this machine's loopback targets and fast intervals."""
    config: dict[str, Any] = yaml.safe_load((ROOT / "exporters" / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    config["rule_files"] = [str(rules)]
    config["alerting"]["alertmanagers"] = [
        {"static_configs": [{"targets": [alertmanager.url.removeprefix("http://")]}]}
    ]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(targets) <= set(jobs), "the test scrapes the jobs the deployment defines"
    config["scrape_configs"] = [
        {"job_name": name, "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}
        for name, port in targets.items()
    ]
    return config


def fast_rules(tmp_path: Path, **limits: str) -> Path:
    """The generated rules, evaluated every second, the page after three seconds; `limits`:
    more `[defaults.<key>]` tables, by key, as TOML lines."""
    thresholds = tmp_path / "thresholds.toml"
    tables = {"no_workers": f'threshold = 0\nfor = "{NO_WORKERS_FOR_S}s"', **limits}
    thresholds.write_text(
        'interval = "1s"\n' + "".join(f"\n[defaults.{key}]\n{body}\n" for key, body in tables.items())
    )
    rules = tmp_path / "asyncmq.rules.yml"
    rules.write_text(render_rules(AlertConfig.load(thresholds)))
    return rules


@asynccontextmanager
async def observed(
    tmp_path: Path, queue: Queue, alertmanager: Server, rules: Path
) -> AsyncIterator[tuple[Prometheus, subprocess.Popen[bytes]]]:
    """A worker of `queue` and the exporter, each serving metrics, scraped as the shipped
    Prometheus config scrapes them (workers and exporter only: not the test's own process,
    which stands for an uninstrumented producer); yields Prometheus and the worker."""
    prometheus_binary = need_binary("prometheus")
    worker_port, exporter_port, prometheus_port = free_port(), free_port(), free_port()
    worker = asyncmq_process(
        "worker", "start", queue.name, "--backend", REDIS_URL, "--app", "tests.observability.app",
        "--concurrency", "5", "--metrics-port", str(worker_port),
    )  # fmt: skip
    exporter = asyncmq_process("exporter", "--backend", REDIS_URL, "--port", str(exporter_port))
    config = prometheus_config(
        rules, alertmanager, {"asyncmq-workers": worker_port, "asyncmq-exporter": exporter_port}
    )
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    argv = [
        prometheus_binary, f"--config.file={tmp_path / 'prometheus.yml'}",
        f"--storage.tsdb.path={tmp_path / 'prometheus-data'}",
        f"--web.listen-address=127.0.0.1:{prometheus_port}", "--enable-feature=exemplar-storage",
    ]  # fmt: skip
    try:
        with running_server(
            Prometheus, argv, prometheus_port, tmp_path / "prometheus.log", "/-/ready"
        ) as prom:
            assert isinstance(prom, Prometheus)
            yield prom, worker
    finally:
        for process in (worker, exporter):
            if process.poll() is None:
                process.terminate()
            finish(process, 15)


async def workload(queue: Queue) -> int:
    """A mix that gives every panel something to show; returns the jobs that will end."""
    await queue.add_bulk([{"task_id": ok.name} for _ in range(20)])
    for _ in range(4):
        await queue.add(fails_once.name, retries=1)
    for _ in range(3):
        await queue.add(always_fails.name)
    for _ in range(3):
        await queue.add(ok.name, delay=0.5)
    await queue.add(sleeps.name, args=[0.5])
    key = uuid.uuid4().hex  # a key of this round's (a ttl holds it past its job's end)
    held = await queue.add(ok.name, deduplication={"id": key, "ttl": 60})
    assert await queue.add(ok.name, deduplication={"id": key, "ttl": 60}) == held  # deduplicated
    for _ in range(2):  # the second in the first's place (debounced)
        await queue.add(ok.name, delay=2, debounce={"id": f"later:{key}", "replace": True})
    return 20 + 4 + 3 + 3 + 1 + 2


async def wait_for(condition: Any, deadline_s: float, what: str) -> Any:
    deadline = asyncio.get_running_loop().time() + deadline_s
    while True:
        found = await asyncio.to_thread(condition)
        if found:
            return found
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.5)


def dashboard_queries(queue_name: str) -> list[tuple[str, str, str]]:
    """(dashboard, panel, PromQL) for every target, with the variables a Grafana user picks."""
    found = []
    for path in sorted((ROOT / "dashboards").glob("*.json")):
        for title, expr in panel_queries(json.loads(path.read_text())):
            concrete = expr.replace("$__rate_interval", RATE_WINDOW).replace("$queue", queue_name)
            assert "$" not in concrete, f"{path.name} / {title}: a variable the test does not know"
            found.append((path.stem, title, concrete))
    return found


def has_values(result: list[dict[str, Any]]) -> bool:
    """A non-empty vector with at least one number (a quantile of nothing is NaN)."""
    return any(not math.isnan(float(sample["value"][1])) for sample in result)


async def test_every_dashboard_panel_shows_a_real_workload_and_the_no_worker_page_reaches_the_pager(
    tmp_path: Path, queue: Queue, alertmanager: Server, receiver: WebhookReceiver
) -> None:
    async with observed(tmp_path, queue, alertmanager, fast_rules(tmp_path)) as (prom, worker):
        await check_dashboards_and_page(prom, queue, worker, receiver)


async def check_dashboards_and_page(
    prom: Prometheus, queue: Queue, worker: Any, receiver: WebhookReceiver
) -> None:
    matcher = f'{{queue="{queue.name}"}}'
    ended = f"sum(asyncmq_jobs_completed_total{matcher}) + sum(asyncmq_jobs_failed_total{matcher})"
    # Two rounds: Prometheus computes a rate from a series' second sample on, so the first
    # round creates every series (as a worker's first jobs of a new task do) and the second
    # is what the panels show, as they would in any running system.
    total = 0
    for _ in range(2):
        total += await workload(queue)
        await wait_for(
            lambda: [s for s in prom.query(ended) if float(s["value"][1]) >= total],  # noqa: B023
            60,
            "Prometheus to see the workload end",
        )
    await asyncio.sleep(3)  # a few more scrapes: the second round is inside every rate window
    empty = [
        f"{dashboard} / {title}: {expr}"
        for dashboard, title, expr in dashboard_queries(queue.name)
        if not has_values(prom.query(expr))
    ]
    assert not empty, "panels without data:\n" + "\n".join(empty)

    worker.terminate()  # every worker gone, while jobs keep arriving
    assert await asyncio.to_thread(worker.wait, 30) == 0

    async def keep_adding() -> None:
        while True:
            await queue.add(ok.name)
            await asyncio.sleep(0.5)

    producer = asyncio.create_task(keep_adding())
    try:
        [page] = await wait_for(
            lambda: [
                alert
                for alert in receiver.alerts_at("/page")
                if alert["labels"].get("alertname") == "AsyncMQNoWorkers"
                and alert["labels"].get("queue") == queue.name
            ][:1],
            60,
            "the no-worker page at the paging webhook",
        )
    finally:
        producer.cancel()
    assert page["status"] == "firing"
    assert page["labels"]["severity"] == "critical"
    assert queue.name in page["annotations"]["summary"]
    runbook = f"/d/asyncmq-runbooks?viewPanel=panel-{runbook_panel_id('AsyncMQNoWorkers')}"
    assert page["annotations"]["runbook_url"] == DEFAULT_GRAFANA_URL + runbook
    assert not [
        alert
        for alert in receiver.alerts_at("/ticket")
        if alert["labels"].get("alertname") == "AsyncMQNoWorkers"
    ]


#: The queue totals the counts test checks, and the worker's own counter of each, if any.
TOTALS_AND_WORKER_COUNTERS = {
    "enqueued": "asyncmq_jobs_enqueued_total",
    "claimed": "asyncmq_jobs_started_total",
    "completed": "asyncmq_jobs_completed_total",
    "retried": "asyncmq_jobs_retried_total",
    "failed": "asyncmq_jobs_failed_total",
    "expired": "asyncmq_jobs_expired_total",
    "cancelled": "asyncmq_jobs_cancelled_total",
    "stalled": "asyncmq_jobs_stalled_total",
    "deduplicated": "asyncmq_jobs_deduplicated_total",
    "debounced": "asyncmq_jobs_debounced_total",
}


async def never_failing_workload(queue: Queue) -> dict[str, int]:
    """Jobs added by this (unscraped) process, some of them deduplicated or debounced, and
    cancelled by the CLI, none of which fails; returns the truth: what the queue's totals must
    read once they are worked."""
    await queue.add_bulk([{"task_id": ok.name} for _ in range(20)])
    await queue.add_bulk([{"task_id": fails_with.name} for _ in range(10)])
    for _ in range(4):
        await queue.add(fails_once.name, retries=1, backoff=Backoff.fixed(0))
    for _ in range(3):
        await queue.add(ok.name, delay=0.5)
    expired = [queue.build_job(ok.name, ttl=1, now=time.time() - 10) for _ in range(2)]
    await queue.store(expired)
    later = [await queue.add(ok.name, delay=3600) for _ in range(5)]
    for job_id in later:
        cancel = asyncmq_process("job", "cancel", job_id, "-q", queue.name, "--backend", REDIS_URL)
        assert await asyncio.to_thread(cancel.wait, 30) == 0, finish(cancel, 0)
        finish(cancel, 0)
    key = uuid.uuid4().hex  # a key of this round's (a ttl holds it past its job's end)
    held = await queue.add(ok.name, deduplication={"id": key, "ttl": 60})
    for _ in range(3):
        assert await queue.add(ok.name, deduplication={"id": key, "ttl": 60}) == held
    await queue.add_bulk(  # each in the place of the one before, due long after the three adds
        [{"task_id": ok.name, "delay": 2, "debounce": {"id": f"later:{key}", "replace": True}}] * 3
    )
    return {
        "enqueued": 20 + 10 + 4 + 3 + 2 + 5 + 1 + 3,
        "claimed": 20 + 10 + 4 * 2 + 3 + 2 + 1 + 1,
        "completed": 20 + 10 + 4 + 3 + 1 + 1,
        "retried": 4,
        "expired": 2,
        "cancelled": 5,
        "deduplicated": 3,
        "debounced": 2,
    }


def read_totals(prom: Prometheus, queue: str) -> dict[str, float]:
    """Each queue total as the dashboards combine them: the same on every target."""
    found = {}
    for total in TOTALS_AND_WORKER_COUNTERS:
        expr = f'sum(max by (queue, task) (asyncmq_queue_jobs_{total}_total{{queue="{queue}"}}))'
        found[total] = sum(float(sample["value"][1]) for sample in prom.query(expr))
    return found


async def test_queue_totals_count_what_no_scraped_process_did_and_a_new_error_fires_the_failure_alert(
    tmp_path: Path, queue: Queue, alertmanager: Server, receiver: WebhookReceiver
) -> None:
    # A job whose worker vanished before any worker of ours ran: recovered, then run.
    stalled_id = await queue.add(ok.name)
    claimed = await queue.backend.claim(queue.name, "vanished", 1, 0.05, time.time(), None)
    assert [job.id for job in claimed.jobs] == [stalled_id]
    truth = {name: 0 for name in TOTALS_AND_WORKER_COUNTERS}
    truth.update(enqueued=1, claimed=2, completed=1, stalled=1)
    rules = fast_rules(tmp_path, failure_ratio='threshold = 0.05\nfor = "3s"')
    async with observed(tmp_path, queue, alertmanager, rules) as (prom, _):
        for _ in range(2):  # the second round is what the rate windows show, as in the test above
            for name, count in (await never_failing_workload(queue)).items():
                truth[name] += count
            await wait_for(
                lambda: read_totals(prom, queue.name) == truth,
                60,
                f"Prometheus to read the queue totals {truth}",
            )
        await asyncio.sleep(3)

        worker_counters = {
            name: sum(float(s["value"][1]) for s in prom.query(f'sum({metric}{{queue="{queue.name}"}})'))
            for name, metric in TOTALS_AND_WORKER_COUNTERS.items()
        }
        print(f"\ncounter       truth  queue total  worker's own counter\n{'-' * 50}")
        totals = read_totals(prom, queue.name)
        for name in TOTALS_AND_WORKER_COUNTERS:
            print(f"{name:<12} {truth[name]:>6} {totals[name]:>12.0f} {worker_counters[name]:>21.0f}")
        assert totals == truth

        by_panel: dict[tuple[str, str], bool] = {}
        for dashboard, title, expr in dashboard_queries(queue.name):
            by_panel[(dashboard, title)] = by_panel.get((dashboard, title), False) or has_values(
                prom.query(expr)
            )
        empty = [f"{dashboard} / {title}" for (dashboard, title), shown in by_panel.items() if not shown]
        assert not empty, "panels without data on a queue that never failed:\n" + "\n".join(empty)

        # A deploy brings an error no worker has seen: its first 50 failures fire the alert.
        await queue.add_bulk([{"task_id": fails_with.name, "args": ["BrandNewError"]} for _ in range(50)])
        [ticket] = await wait_for(
            lambda: [
                alert
                for alert in receiver.alerts_at("/ticket")
                if alert["labels"].get("alertname") == "AsyncMQFailureRatioHigh"
                and alert["labels"].get("queue") == queue.name
            ][:1],
            60,
            "the failure-ratio ticket at the ticket webhook",
        )
    assert ticket["status"] == "firing"
    assert ticket["labels"]["severity"] == "warning"
