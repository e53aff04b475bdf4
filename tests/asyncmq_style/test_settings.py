"""AsyncMQ's settings page (docs/ of dymmond/asyncmq) as written there: an `AppSettings`
class named by `ASYNCMQ_SETTINGS_MODULE`, whose backend every enqueue and queue without a
backend of its own then uses."""

from __future__ import annotations

import asyncio
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from asyncmq.backends.redis import RedisBackend
from asyncmq.conf import configure, settings
from asyncmq.job import JobState
from asyncmq.queues import Queue
from asyncmq.registry import TASK_REGISTRY
from asyncmq.tasks import task
from tests.asyncmq_style.conftest import REDIS_URL


@pytest.fixture
def app_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, redis_backend: RedisBackend
) -> Iterator[None]:
    """myapp/settings.py of the page, its Redis the test one (127.0.0.1 rather than localhost)."""
    package = tmp_path / "myapp"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "settings.py").write_text(
        textwrap.dedent(
            f"""
            from asyncmq.backends.redis import RedisBackend
            from asyncmq.conf.global_settings import Settings


            class AppSettings(Settings):
                backend = RedisBackend({REDIS_URL!r})
                worker_concurrency = 4
                scan_interval = 1.0
                logging_level = "INFO"
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("ASYNCMQ_SETTINGS_MODULE", "myapp.settings.AppSettings")
    configure(None)
    yield
    monkeypatch.delitem(sys.modules, "myapp.settings", raising=False)
    monkeypatch.delitem(sys.modules, "myapp", raising=False)


@pytest.mark.usefixtures("app_settings")
async def test_enqueue_without_a_backend_uses_the_settings_backend(name: str) -> None:
    @task(queue=name, name=f"{name}.greet", retries=2, ttl=60)
    async def greet(name: str) -> str:
        return f"Hello {name}"

    try:
        assert settings.worker_concurrency == 4
        delayed = await greet.enqueue("Alice", delay=5, priority=3)
        now = await greet.enqueue("Bob")
        queue = Queue(name)  # no backend: the settings'
        Queue(name).add_repeatable(greet.name, every=3600, args=["Carol"])

        job = await queue.get_job(delayed)
        assert (job.status, job.priority, job.args) == (JobState.DELAYED, 3, ["Alice"])
        worker = queue.worker()
        running = asyncio.create_task(worker.run())
        assert await now.result(timeout=10) == "Hello Bob"
        worker.stop()
        await running
        assert [rep.args for rep in await queue.repeatables()] == [["Carol"]]  # stored as it started
        assert (await queue.get_job(delayed)).status is JobState.DELAYED  # its 5 s are not over
        assert queue.backend is sys.modules["myapp.settings"].AppSettings.backend
        await queue.backend.close()
    finally:
        TASK_REGISTRY.pop(greet.name, None)


def test_the_settings_class_is_the_one_in_force(app_settings: None) -> None:
    assert isinstance(settings.backend, RedisBackend)
    assert settings.scan_interval == 1.0
    assert settings.log_level.lower() == "info"
