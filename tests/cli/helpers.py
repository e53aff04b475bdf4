"""Shared by the CLI tests: invoke the CLI in-process, run a coroutine, find the executable."""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from click.testing import CliRunner, Result

from asyncmq.cli.main import cli

__all__ = ["asyncmq_command", "call", "invoke", "table_rows"]

T = TypeVar("T")
_BAR = re.compile("[│┃]")


def invoke(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), input=input)


def call(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def table_rows(output: str) -> list[list[str]]:
    """The header and body rows of the rich tables in `output`, as stripped cells."""
    return [
        [cell.strip() for cell in _BAR.split(line)[1:-1]] for line in output.splitlines() if _BAR.search(line)
    ]


def asyncmq_command() -> list[str]:
    """The installed console script, else the same entry point through this interpreter."""
    script = Path(sys.executable).with_name("asyncmq")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from asyncmq.cli.main import cli; cli(prog_name='asyncmq')"]
