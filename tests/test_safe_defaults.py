"""Safe defaults, kept: endpoints bind loopback unless told; a job's arguments and result stay
out of spans, metric labels and logs; a backend's password is masked wherever the backend is
named (reprs, errors, the CLI, bench reports, logs); no pickle on a job's path; and TLS options
in a URL reach the driver."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import click
import orjson
import pytest
from prometheus_client import CollectorRegistry

import asyncmq
from asyncmq.backends import backend_from_url
from asyncmq.backends.base import redacted_url, url_secrets
from asyncmq.backends.memory import InMemoryBackend
from asyncmq.bench.measure import BenchConfig
from asyncmq.bench.report import BenchReport
from asyncmq.cli.main import cli
from asyncmq.conf import Settings
from asyncmq.errors import ConfigurationError
from asyncmq.queues import Queue
from tests.cli.helpers import asyncmq_command
from tests.conformance.support import server_url

SECRET = "s3cret-do-not-print"


#: A URL of each backend with a password, and how it is shown.
MASKED = {
    f"redis://default:{SECRET}@127.0.0.1:6379/0": "redis://default:***@127.0.0.1:6379/0",
    f"rediss://:{SECRET}@cache.example:6380/1": "rediss://:***@cache.example:6380/1",
    f"redis+cluster://default:{SECRET}@127.0.0.1:7101": "redis+cluster://default:***@127.0.0.1:7101",
    f"postgresql://app:{SECRET}@db.example:5432/jobs?sslmode=require": (
        "postgresql://app:***@db.example:5432/jobs?sslmode=require"
    ),
    f"postgresql://app@db.example/jobs?password={SECRET}&sslpassword={SECRET}": (
        "postgresql://app@db.example/jobs?password=***&sslpassword=***"
    ),
    f"mongodb://app:{SECRET}@m1.example,m2.example/jobs?tls=true": (
        "mongodb://app:***@m1.example,m2.example/jobs?tls=true"
    ),
    # Mistyped: an unknown scheme, and a password with a '/' and an '@' nobody escaped.
    f"reds://:{SECRET}@127.0.0.1:6379/0": "reds://:***@127.0.0.1:6379/0",
    "redis://:s3c/ret@do-not-print@127.0.0.1:6379/0": "redis://:***@127.0.0.1:6379/0",
    "redis://127.0.0.1:6379/0": "redis://127.0.0.1:6379/0",
    "redis://default@127.0.0.1:6379/0": "redis://default@127.0.0.1:6379/0",
    "memory://": "memory://",
}

#: A URL of each backend kind with a password in its user part.
WITH_PASSWORD = {
    "redis": f"redis://default:{SECRET}@127.0.0.1:6379/0",
    "redis+cluster": f"redis+cluster://default:{SECRET}@127.0.0.1:7101",
    "postgresql": f"postgresql://app:{SECRET}@127.0.0.1:5432/test?password={SECRET}",
    "mongodb": f"mongodb://app:{SECRET}@127.0.0.1:27017/jobs?authSource=admin",
}


# -- passwords -------------------------------------------------------------------------------
@pytest.mark.parametrize("url", list(MASKED))
def test_redacted_url_masks_every_password_of_a_url(url: str) -> None:
    assert redacted_url(url) == MASKED[url]


def test_url_secrets_finds_a_password_as_a_driver_may_quote_it_when_it_misreads_the_url() -> None:
    assert url_secrets("redis://:s3c/ret@host:6379/0") == ["s3c/ret", "s3c"]
    escaped = "mongodb://u:p%40ss@host/db?tlsCertificateKeyFilePassword=k"
    assert url_secrets(escaped) == ["p%40ss", "p@ss", "k"]
    assert url_secrets("redis://host:6379/0") == []


@pytest.mark.parametrize("kind", list(WITH_PASSWORD))
def test_every_backends_repr_masks_its_password(kind: str) -> None:
    shown = repr(backend_from_url(WITH_PASSWORD[kind]))

    assert SECRET not in shown
    assert "***" in shown


def test_a_mistyped_scheme_is_refused_with_the_password_masked() -> None:
    with pytest.raises(ConfigurationError) as refused:
        backend_from_url(f"reds://:{SECRET}@127.0.0.1:6379/0")

    assert "reds://:***@127.0.0.1:6379/0" in str(refused.value)
    assert SECRET not in str(refused.value)


#: Each backend kind on a port nothing listens on, a password in the URL.
UNREACHABLE = {
    "redis": f"redis://default:{SECRET}@127.0.0.1:1/0",
    "redis+cluster": f"redis+cluster://default:{SECRET}@127.0.0.1:1",
    "postgresql": f"postgresql://app:{SECRET}@127.0.0.1:1/test",
    "mongodb": f"mongodb://app:{SECRET}@127.0.0.1:1/jobs?serverSelectionTimeoutMS=200&connectTimeoutMS=200",
}


#: Run in a process of its own: a MongoDB client closed mid-connect leaves a socket to the
#: garbage collector (PyMongo's), which would warn in whichever test came next.
_CONNECT_AND_READ = """
import asyncio, sys, traceback
from asyncmq.backends import backend_from_url
from asyncmq.backends.redis import RedisBackend

async def main(url: str) -> None:
    # Redis without retries: they would only make the test slow.
    backend = RedisBackend(url, retries=0) if url.startswith("redis") else backend_from_url(url)
    try:
        await backend.connect()
        await backend.queues()
    except Exception as exc:
        print("".join(traceback.format_exception(exc)))
    await backend.close()

asyncio.run(main(sys.argv[1]))
"""


@pytest.mark.parametrize("kind", list(UNREACHABLE))
def test_the_error_of_an_unreachable_backend_and_its_causes_never_hold_its_password(kind: str) -> None:
    program = [sys.executable, "-c", _CONNECT_AND_READ, UNREACHABLE[kind]]
    done = subprocess.run(program, capture_output=True, text=True, timeout=60)

    assert "Traceback" in done.stdout, done.stderr
    assert SECRET not in done.stdout + done.stderr


def _run_cli(*args: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [*asyncmq_command(), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )
    return done.stdout + done.stderr


@pytest.mark.parametrize(
    "url",
    [
        f"reds://:{SECRET}@127.0.0.1:6379/0",  # a one-line error
        "redis://:s3cret/do-not-print@127.0.0.1:6379/0",  # the driver would misread it: refused
        f"postgresql://app:{SECRET}@127.0.0.1:1/test?password={SECRET}",
    ],
)
def test_the_cli_masks_the_password_of_a_backend_it_cannot_use(url: str) -> None:
    shown = _run_cli("queue", "list", "--backend", url)

    assert "s3cret" not in shown


class MisreadSettings(Settings):
    """Settings naming a backend whose password holds an unescaped '/': drivers misread it."""

    backend = "redis://:s3cret/do-not-print@127.0.0.1:6379/0"


@pytest.mark.parametrize(
    "env",
    [
        {"ASYNCMQ_BACKEND": MisreadSettings.backend},
        {"ASYNCMQ_SETTINGS_MODULE": f"{__name__}.MisreadSettings"},
    ],
)
def test_the_cli_masks_the_password_of_a_configured_backend_it_cannot_use(env: dict[str, str]) -> None:
    shown = _run_cli("queue", "list", env=env)

    assert "the password holds a '/', '?' or '#'" in shown  # refused in one line, not misread
    assert "Traceback" not in shown
    assert "s3cret" not in shown
    assert "do-not-print" not in shown


def test_bench_reports_mask_the_backend_password_in_the_machine_the_config_and_the_command() -> None:
    url = f"redis://default:{SECRET}@127.0.0.1:6379/0"
    report = BenchReport(BenchConfig(backend_url=url), {}, ["asyncmq", "bench", "--backend", url])

    shown = report.to_dict()
    assert (
        shown["machine"]["backend"]
        == shown["config"]["backend_url"]
        == "redis://default:***@127.0.0.1:6379/0"
    )
    assert SECRET not in orjson.dumps(shown).decode()


def test_log_lines_of_a_worker_on_a_backend_with_a_password_mask_it() -> None:
    server = server_url("ASYNCMQ_TEST_REDIS_URL")
    url = server.replace("redis://", f"redis://default:{SECRET}@", 1)  # a nopass user takes any
    queue = f"safe-{uuid.uuid4().hex[:10]}"
    try:
        shown = _run_cli(
            "worker", "start", queue, "--burst", "--log-level", "debug", env={"ASYNCMQ_BACKEND": url}
        )
    finally:
        _forget_queue(server, queue)

    assert "worker" in shown.lower()
    assert SECRET not in shown


def _forget_queue(server: str, queue: str) -> None:
    """Delete what a worker left of `queue` on the shared Redis (default prefix)."""
    import redis

    client = redis.Redis.from_url(server)
    try:
        keys = list(client.scan_iter(match=f"asyncmq:{{{queue}}}:*"))
        if keys:
            client.delete(*keys)
        client.srem("asyncmq:queues", queue)
    finally:
        client.close()


# -- endpoints -------------------------------------------------------------------------------
async def test_the_metrics_servers_bind_loopback_unless_told(tmp_path: Path) -> None:
    from asyncmq.observability import serve_metrics, serve_multiprocess_metrics

    registry = CollectorRegistry()
    for server in (
        serve_metrics(InMemoryBackend(), port=0, registry=registry),
        serve_multiprocess_metrics(InMemoryBackend(), str(tmp_path), port=0),
    ):
        try:
            assert server.host == "127.0.0.1"
        finally:
            server.close()


def _options(group: click.Group) -> Iterator[tuple[str, click.Parameter]]:
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from ((f"{name} {sub}", param) for sub, param in _options(command))
        else:
            yield from ((name, param) for param in command.params)


def test_every_cli_command_that_serves_binds_loopback_unless_told() -> None:
    hosts = {name: param.default for name, param in _options(cli) if param.name in ("host", "metrics_host")}

    assert {"exporter", "worker start"} <= set(hosts)
    assert set(hosts.values()) == {"127.0.0.1"}, hosts


# -- a job's data ----------------------------------------------------------------------------
ARGUMENT, RESULT = "argument-canary-7d1f", "result-canary-93ab"


@asyncmq.task(name="safe.echo")
async def echo(value: str, *, also: str) -> str:
    return RESULT


@asyncmq.task(name="safe.refuse")
async def refuse(value: str) -> str:
    raise ValueError("refused")


async def test_a_jobs_arguments_and_result_stay_out_of_spans_metric_labels_and_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from asyncmq.observability import instrument

    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    registry = CollectorRegistry()
    instrument(registry=registry, tracer_provider=provider)
    caplog.set_level(logging.DEBUG)
    queue = Queue("safe-data", backend=InMemoryBackend())

    await queue.add(echo.name, args=[ARGUMENT], kwargs={"also": ARGUMENT})
    await queue.add(refuse.name, args=[ARGUMENT])
    worker = queue.worker()
    while await worker.process():
        pass

    assert {job.result for job in await queue.list_jobs("completed")} == {RESULT}
    recorded = [
        (span.name, dict(span.attributes or {}), [(e.name, dict(e.attributes or {})) for e in span.events])
        for span in spans.get_finished_spans()
    ]
    assert len(recorded) >= 4  # a send and a process span per job
    labels = [sample.labels for metric in registry.collect() for sample in metric.samples]
    for shown in (repr(recorded), repr(labels), caplog.text):
        assert ARGUMENT not in shown
        assert RESULT not in shown


# -- serialization ---------------------------------------------------------------------------
def test_no_pickle_is_imported_on_a_jobs_path_through_any_backend() -> None:
    program = """
import asyncio, sys
import asyncmq, asyncmq.worker, asyncmq.scheduler
import asyncmq.backends.redis, asyncmq.backends.postgres, asyncmq.backends.mongo
from asyncmq.backends.memory import InMemoryBackend

@asyncmq.task(name="p.add")
async def add(a: int, b: int) -> int:
    return a + b

async def main() -> None:
    queue = asyncmq.Queue("p", backend=InMemoryBackend())
    job_id = await queue.add(add.name, args=[1, 2])
    assert await queue.worker().process()
    assert (await queue.get_job(job_id)).result == 3

asyncio.run(main())
print(sorted(name for name in sys.modules if name in ("pickle", "_pickle", "dill", "cloudpickle")))
"""
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60)

    assert (done.returncode, done.stdout.strip()) == (0, "[]"), done.stderr


# -- TLS -------------------------------------------------------------------------------------
async def test_a_rediss_url_gives_the_driver_tls_connections_with_their_options() -> None:
    from redis.asyncio.connection import SSLConnection

    backend = backend_from_url("rediss://:pw@cache.example:6380/0?ssl_cert_reqs=required")
    await backend.connect()  # builds the client; nothing is sent before the first command
    try:
        pool = backend.client.connection_pool  # type: ignore[attr-defined]
        assert pool.connection_class is SSLConnection
        assert pool.connection_kwargs["ssl_cert_reqs"] == "required"
    finally:
        await backend.close()


async def test_a_rediss_cluster_url_gives_the_cluster_client_tls_connections() -> None:
    from redis.asyncio.connection import SSLConnection

    backend = backend_from_url("rediss+cluster://:pw@cache.example:7101")
    await backend.connect()
    try:
        assert backend.client.connection_kwargs["connection_class"] is SSLConnection  # type: ignore[attr-defined]
    finally:
        await backend.close()


async def test_postgresql_sslmode_require_reaches_the_driver() -> None:
    """The test server speaks no TLS: a driver told to require it is refused the upgrade."""
    server = server_url("ASYNCMQ_TEST_POSTGRES_URL")
    separator = "&" if "?" in server else "?"
    backend = backend_from_url(f"{server}{separator}sslmode=require&schema=asyncmq_tls")

    with pytest.raises(ConfigurationError, match="rejected SSL upgrade"):
        await backend.connect()


@pytest.mark.parametrize(("query", "tls"), [("?tls=true", True), ("", False)])
async def test_mongodb_tls_true_gives_the_driver_a_tls_context(query: str, tls: bool) -> None:
    from asyncmq.backends.mongo import MongoBackend

    backend = backend_from_url(f"mongodb://app:pw@m1.example:27017/jobs{query}")
    assert isinstance(backend, MongoBackend)
    client = backend._build_client()  # as `connect()` does; nothing is sent before a command
    try:
        assert (client.options.pool_options._ssl_context is not None) is tls
    finally:
        await client.close()
