"""Tasks for the CLI tests, registered by importing this module (`--app tests.cli.app`)."""

from __future__ import annotations

import asyncio

from asyncmq.tasks import task

__all__ = ["explode", "greet", "hang"]


@task(queue="mail", name="clitest.greet")
async def greet(name: str) -> str:
    return f"hello {name}"


@task(queue="mail", name="clitest.explode")
async def explode() -> None:
    raise RuntimeError("boom")


@task(queue="mail", name="clitest.hang")
async def hang() -> None:
    await asyncio.sleep(60)
