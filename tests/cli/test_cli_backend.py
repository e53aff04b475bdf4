"""`queue list`, `queue info`, `job list` and `info` name the backend they read: its URL
with its password masked, and, for the implicit in-process default, that it sees only the
command's own process and how to read a worker's queues instead."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar
from urllib.parse import urlsplit

import pytest

from asyncmq.backends.redis import RedisBackend
from asyncmq.conf import configure
from asyncmq.queues import Queue
from tests.cli.helpers import call, invoke, table_rows
from tests.redis.support import missing

T = TypeVar("T")

SECRET = "s3cret-do-not-print"
_SERVER = urlsplit(os.environ.get("ASYNCMQ_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"))
_HOST = f"{_SERVER.hostname}:{_SERVER.port or 6379}{_SERVER.path}"
#: The test server, logged in as its `default` user (any password passes a `nopass` user).
WITH_PASSWORD = f"redis://default:{SECRET}@{_HOST}"
#: How it is shown: the password masked.
SHOWN = f"redis://default:***@{_HOST}"
WITHOUT_PASSWORD = f"redis://default@{_HOST}"

IMPLICIT = (
    "Backend: memory:// (the in-process default: this command sees only its own process; "
    "pass --backend redis://HOST:6379/0 or set ASYNCMQ_BACKEND to read a worker's queues)"
)


async def _on_redis(action: Callable[[RedisBackend], Awaitable[T]]) -> T:
    """Run `action` on a connected backend for the test server; skip the test without one."""
    from redis.exceptions import ConnectionError as RedisConnectionError

    backend = RedisBackend(f"redis://{_HOST}")
    try:
        await backend.connect()
        await backend.client.ping()
    except (RedisConnectionError, OSError) as exc:
        await backend.close()
        missing(f"no Redis at {_HOST}: {exc}")
    try:
        return await action(backend)
    finally:
        await backend.close()


async def _forget(backend: RedisBackend, name: str) -> None:
    keys = [key async for key in backend.client.scan_iter(match=f"{backend.prefix}:{{{name}}}:*")]
    if keys:
        await backend.client.delete(*keys)
    await backend.client.srem(f"{backend.prefix}:queues", name)


@pytest.fixture
def redis_queue() -> Iterator[str]:
    """A queue of its own on the test Redis, holding job `r1`; its keys are deleted afterwards."""
    name = f"clitest-{uuid.uuid4().hex[:12]}"
    call(_on_redis(lambda backend: Queue(name, backend=backend).add("clitest.greet", ["ada"], job_id="r1")))
    yield name
    call(_on_redis(lambda backend: _forget(backend, name)))


def test_queue_list_names_an_explicit_redis_backend_before_the_table_with_its_password_masked(
    redis_queue: str,
) -> None:
    result = invoke("queue", "list", "--backend", WITH_PASSWORD)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == f"Backend: {SHOWN}"
    assert redis_queue in [row[0] for row in table_rows(result.stdout)]
    assert SECRET not in result.output


def test_queue_info_job_list_and_info_name_the_redis_backend_they_read(redis_queue: str) -> None:
    queue_info = invoke("queue", "info", redis_queue, "--backend", WITH_PASSWORD)
    assert queue_info.exit_code == 0, queue_info.output
    assert queue_info.stdout.splitlines()[:2] == [f"Backend: {SHOWN}", f"Queue {redis_queue}: running"]
    jobs = invoke("job", "list", "-q", redis_queue, "--backend", WITH_PASSWORD)
    assert jobs.exit_code == 0, jobs.output
    assert jobs.stdout.splitlines()[0] == f"Backend: {SHOWN}"
    assert table_rows(jobs.stdout)[1][:3] == ["r1", "clitest.greet", "waiting"]
    info = invoke("info", "--backend", WITH_PASSWORD)
    assert info.exit_code == 0, info.output
    assert info.stdout.splitlines()[:2] == ["asyncmq 0.1.0 on the redis backend", f"Backend: {SHOWN}"]
    assert SECRET not in queue_info.output + jobs.output + info.output


def test_the_json_of_each_command_has_a_backend_key_with_the_url_with_its_password_masked(
    redis_queue: str,
) -> None:
    for command in (
        ["queue", "list"],
        ["queue", "info", redis_queue],
        ["job", "list", "-q", redis_queue],
        ["info"],
    ):
        result = invoke(*command, "--backend", WITH_PASSWORD, "--json")
        assert result.exit_code == 0, (command, result.output)
        assert json.loads(result.stdout)["backend"] == SHOWN, command
        assert SECRET not in result.output, command
    queues = json.loads(invoke("queue", "list", "--backend", WITH_PASSWORD, "--json").stdout)["queues"]
    assert redis_queue in [queue["name"] for queue in queues]
    jobs = json.loads(invoke("job", "list", "-q", redis_queue, "--backend", WITH_PASSWORD, "--json").stdout)
    assert [job["id"] for job in jobs["jobs"]] == ["r1"]


def test_a_password_given_as_a_query_parameter_is_masked_too(redis_queue: str) -> None:
    result = invoke("job", "list", "-q", redis_queue, "--backend", f"{WITHOUT_PASSWORD}?password={SECRET}")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == f"Backend: {WITHOUT_PASSWORD}?password=***"
    assert SECRET not in result.output


def test_a_redis_url_from_asyncmq_backend_is_named_with_its_password_masked(
    redis_queue: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ASYNCMQ_BACKEND", WITH_PASSWORD)
    configure(None)  # the fixture's queue already loaded the settings, before the variable
    result = invoke("job", "list", "-q", redis_queue)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == f"Backend: {SHOWN}"
    assert SECRET not in result.output


def test_queue_list_on_the_implicit_default_with_no_queues_says_how_to_read_a_workers_queues() -> None:
    result = invoke("queue", "list")
    assert (result.exit_code, result.stdout) == (0, f"{IMPLICIT}\nNo queues.\n")


def test_job_list_and_info_on_the_implicit_default_say_it_is_the_in_process_default() -> None:
    jobs = invoke("job", "list", "-q", "mail")
    assert (jobs.exit_code, jobs.stdout) == (0, f"{IMPLICIT}\nNo jobs in queue 'mail'.\n")
    info = invoke("info")
    assert (info.exit_code, info.stdout) == (
        0,
        f"asyncmq 0.1.0 on the memory backend\n{IMPLICIT}\nNo queues.\nNo live workers.\n",
    )


def test_queue_info_of_a_queue_missing_from_the_implicit_default_says_where_it_looked() -> None:
    result = invoke("queue", "info", "mail")
    assert result.exit_code == 1
    assert result.output == (
        "Error: no queue 'mail' on the memory backend (the in-process default: this command sees "
        "only its own process; pass --backend redis://HOST:6379/0 or set ASYNCMQ_BACKEND to read "
        "a worker's queues); `asyncmq queue list` lists the queues\n"
    )


def test_the_implicit_default_json_names_memory_without_the_hint() -> None:
    result = invoke("queue", "list", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"backend": "memory://", "queues": []}


def test_memory_given_explicitly_with_the_flag_is_named_without_the_hint() -> None:
    queues = invoke("queue", "list", "--backend", "memory://")
    assert (queues.exit_code, queues.stdout) == (0, "Backend: memory://\nNo queues.\n")
    info = invoke("info", "--backend", "memory://")
    assert (info.exit_code, info.stdout.splitlines()[1]) == (0, "Backend: memory://")


def test_memory_given_explicitly_in_asyncmq_backend_is_named_without_the_hint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ASYNCMQ_BACKEND", "memory://")
    result = invoke("job", "list", "-q", "mail")
    assert (result.exit_code, result.stdout) == (0, "Backend: memory://\nNo jobs in queue 'mail'.\n")
