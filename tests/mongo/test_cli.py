"""A `mongodb://` URL wherever a backend URL is taken: the CLI's commands, the standalone
exporter and `asyncmq bench`, each against a database of its own on the test server."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson
import pytest
from pymongo import MongoClient

from asyncmq.backends import backend_from_url
from asyncmq.bench.measure import METRICS
from asyncmq.queues import Queue
from tests.cli.helpers import invoke, table_rows
from tests.observability.support import asyncmq_process, finish, free_port, scrape_until


@pytest.fixture
def database_url(mongo_url: str) -> Iterator[str]:
    """The test server's URL naming a database of the test's own, dropped afterwards."""
    database = f"asyncmq_cli_{uuid.uuid4().hex[:10]}"
    parts = urlsplit(mongo_url)
    client: MongoClient[Any] = MongoClient(mongo_url, serverSelectionTimeoutMS=3000)
    try:
        yield urlunsplit(parts._replace(path=f"/{database}"))
    finally:
        client.drop_database(database)
        client.close()


async def _add(url: str, queue: str, jobs: int, delayed: int = 0) -> list[str]:
    backend = backend_from_url(url)
    try:
        ids = await Queue(queue, backend=backend).add_bulk([{"task_id": "cli.task"}] * jobs)
        for _ in range(delayed):
            ids.append(await Queue(queue, backend=backend).add("cli.task", delay=300))
        return ids
    finally:
        await backend.close()


def test_queue_list_queue_info_job_list_and_info_read_a_mongodb_backend(database_url: str) -> None:
    ids = asyncio.run(_add(database_url, "mails", 3, delayed=1))

    listed = invoke("queue", "list", "--backend", database_url)
    assert listed.exit_code == 0, listed.output
    header, *rows = table_rows(listed.stdout)
    row = dict(zip(header, next(row for row in rows if row[0] == "mails"), strict=True))
    assert (row["waiting"], row["delayed"]) == ("3", "1")

    info = invoke("queue", "info", "mails", "--backend", database_url)
    assert info.exit_code == 0, info.output
    jobs = invoke("job", "list", "--queue", "mails", "--state", "waiting", "--backend", database_url)
    assert jobs.exit_code == 0, jobs.output
    assert {row[0] for row in table_rows(jobs.stdout)[1:]} == set(ids[:3])

    everything = invoke("info", "--json", "--backend", database_url)
    assert everything.exit_code == 0, everything.output
    [queue] = [queue for queue in json.loads(everything.stdout)["queues"] if queue["name"] == "mails"]
    assert queue["counts"]["waiting"] == 3


@pytest.mark.slow
async def test_the_exporter_serves_a_mongodb_backends_queues(database_url: str) -> None:
    await _add(database_url, "depth", 4, delayed=1)
    port = free_port()
    exporter = asyncmq_process("exporter", "--backend", database_url, "--port", str(port))
    q = 'queue="depth"'
    expected = {
        f'asyncmq_queue_jobs{{{q},state="waiting"}}': 4,
        f'asyncmq_queue_jobs{{{q},state="delayed"}}': 1,
        f"asyncmq_workers{{{q}}}": 0,
        'asyncmq_backend_up{backend="mongodb"}': 1,
    }
    try:
        found = await scrape_until(f"http://127.0.0.1:{port}/metrics", expected)
    finally:
        exporter.terminate()
        err = await asyncio.to_thread(finish, exporter, 30)
    assert exporter.returncode == 0, err
    assert {name: found.get(name) for name in expected} == expected
    assert found[f"asyncmq_queue_oldest_job_age_seconds{{{q}}}"] > 0


@pytest.mark.slow
def test_bench_on_mongodb_writes_every_figure_and_removes_its_queues(
    database_url: str, tmp_path: Path
) -> None:
    report = tmp_path / "bench.json"
    args = ("--jobs", "200", "--repeat", "1", "--rate", "200", "--json", str(report))
    result = invoke("bench", "--backend", database_url, *args)
    assert result.exit_code == 0, result.output

    figures = orjson.loads(report.read_bytes())["results"]["noop"]
    assert set(figures) == set(METRICS)
    assert 0 < figures["round_trips_per_job"]["median"] < 1  # claims and finishes are batched
    parts = urlsplit(database_url)
    client: MongoClient[Any] = MongoClient(urlunsplit(parts._replace(path="/")))
    try:
        database = client[parts.path.strip("/")]
        assert database.jobs.count_documents({}) == 0
    finally:
        client.close()


def test_credentials_the_server_does_not_check_are_one_line_not_a_traceback(database_url: str) -> None:
    """nx-27017 has no authentication: PyMongo's SCRAM exchange then fails on a reply it does
    not expect (a `KeyError` deep in the driver), which must reach the user as one line."""
    parts = urlsplit(database_url)
    with_user = urlunsplit(parts._replace(netloc=f"bob:s3cret@{parts.netloc}"))
    result = invoke("queue", "list", "--backend", with_user)
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    assert "s3cret" not in result.output
    assert "authentication" in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
