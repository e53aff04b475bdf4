"""How a command that cannot do its work ends: one line on stderr naming the problem and
what to do, and an exit code per kind of failure, so a script can tell "the backend is
down" from "the password is wrong" from "the port is taken" without reading the text.

Drivers raise their own exceptions (redis-py, asyncpg, pymongo), often wrapped in an
asyncmq error by the backend: `classify` walks the chain of causes and recognises them by
class name, so no driver is imported to tell them apart. A traceback is printed only with
`asyncmq --debug` (or `ASYNCMQ_DEBUG=1`); errors nobody expected keep theirs, since those
are bugs to report.
"""

from __future__ import annotations

import enum
import os
import traceback
from collections.abc import Iterator
from contextlib import suppress

import click

from asyncmq.backends.base import redacted_url, url_secrets
from asyncmq.errors import AsyncMQError, ConfigurationError, UnsupportedError

__all__ = [
    "DEBUG_ENV",
    "EXIT_CODES_HELP",
    "MEANINGS",
    "CommandFailure",
    "ExitCode",
    "classify",
    "fail",
    "mask_secrets",
    "note_backend",
    "remember_args",
]

#: `ASYNCMQ_DEBUG=1` does what `asyncmq --debug` does.
DEBUG_ENV = "ASYNCMQ_DEBUG"
_ARGS_KEY = "asyncmq.args"
_BACKEND_KEY = "asyncmq.backend"


class ExitCode(enum.IntEnum):
    """What a failed command's exit status says (`MEANINGS`). 2 is click's own."""

    REFUSED = 1
    USAGE = 2
    CONFIGURATION = 3
    UNREACHABLE = 4
    CREDENTIALS = 5
    PORT = 6
    UNSUPPORTED = 7


MEANINGS = {
    ExitCode.REFUSED: "refused: no such job or queue, a job in the wrong state",
    ExitCode.USAGE: "a bad option, argument or option value",
    ExitCode.CONFIGURATION: "bad configuration: settings, an ASYNCMQ_* variable, the backend URL, "
    "a missing extra",
    ExitCode.UNREACHABLE: "the backend cannot be reached (not running, wrong host or port, timed out)",
    ExitCode.CREDENTIALS: "the backend refused the login (wrong user or password)",
    ExitCode.PORT: "a port to listen on is taken or not allowed",
    ExitCode.UNSUPPORTED: "the backend cannot do this (events on memory://)",
}

#: The epilog of `asyncmq --help` (`\b` keeps click from rewrapping the table).
EXIT_CODES_HELP = "\n".join(
    [
        "\b",
        "Exit codes:",
        "  0  done",
        *(f"  {int(code)}  {text}" for code, text in MEANINGS.items()),
        "A failure prints one line saying what went wrong and what to do;",
        f"--debug (or {DEBUG_ENV}=1) prints its traceback too.",
    ]
)


class CommandFailure(click.ClickException):
    """`Error: <message>` on stderr and exit `code`: what every expected failure becomes."""

    def __init__(self, code: ExitCode, message: str) -> None:
        super().__init__(message)
        self.code = code

    @property  # click reads it when the exception ends the command
    def exit_code(self) -> int:  # type: ignore[override]
        return int(self.code)


# -- recognising a failure ------------------------------------------------------------
_UNREACHABLE = frozenset(
    {
        "redis.exceptions.ConnectionError",
        "redis.exceptions.TimeoutError",
        "redis.exceptions.ClusterDownError",
        "pymongo.errors.ConnectionFailure",
        "asyncpg.exceptions.CannotConnectNowError",
        "builtins.ConnectionError",
        "builtins.TimeoutError",
        "socket.gaierror",
    }
)
_CREDENTIALS = frozenset(
    {
        "redis.exceptions.AuthenticationError",
        "redis.exceptions.AuthenticationWrongNumberOfArgsError",
        "redis.exceptions.NoPermissionError",
        "asyncpg.exceptions.InvalidAuthorizationSpecificationError",
    }
)
#: MongoDB's code for a failed login (an `OperationFailure` like any refused command).
_MONGO_AUTH_FAILED = 18


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The error and what caused it, outermost first (each once)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)


def _driver_kind(exc: BaseException) -> ExitCode | None:
    for klass in type(exc).__mro__:
        name = f"{klass.__module__}.{klass.__qualname__}"
        if name in _CREDENTIALS:
            return ExitCode.CREDENTIALS
        if name == "pymongo.errors.OperationFailure" and getattr(exc, "code", None) == _MONGO_AUTH_FAILED:
            return ExitCode.CREDENTIALS
        if name in _UNREACHABLE:
            return ExitCode.UNREACHABLE
    return None


_WHAT_TO_DO = {
    ExitCode.UNREACHABLE: "check that it is running and that the URL (--backend or ASYNCMQ_BACKEND) names it",
    ExitCode.CREDENTIALS: "check the user and password in the URL (--backend or ASYNCMQ_BACKEND)",
}


def classify(exc: BaseException, backend: str | None = None) -> tuple[ExitCode, str] | None:
    """(exit code, one-line message) for an expected failure, `None` for a bug.

    `backend` is the (masked) URL the command used, named in a driver error's message."""
    kind = next((k for k in map(_driver_kind, _chain(exc)) if k is not None), None)
    if isinstance(exc, AsyncMQError):  # its message names the backend already
        message = _one_line(str(exc) or type(exc).__name__)
        if kind is not None:
            return kind, f"{message}: {_WHAT_TO_DO[kind]}"
        if isinstance(exc, UnsupportedError):
            return ExitCode.UNSUPPORTED, message
        if isinstance(exc, ConfigurationError):
            return ExitCode.CONFIGURATION, message
        return ExitCode.REFUSED, message
    if kind is None:
        return None
    where = f" at {backend}" if backend else ""
    detail = _one_line(f"{type(exc).__name__}: {exc}")
    problem = "refused the login" if kind is ExitCode.CREDENTIALS else "cannot be reached"
    return kind, f"the backend{where} {problem} ({detail}): {_WHAT_TO_DO[kind]}"


def _one_line(text: str) -> str:
    return " ".join(text.split())


# -- what the command was run with ----------------------------------------------------
def remember_args(ctx: click.Context, args: list[str]) -> None:
    """Every sub-command's words, read back to find the URLs whose secrets to mask."""
    ctx.meta[_ARGS_KEY] = list(args)


def note_backend(url: str) -> None:
    """Record the (masked) backend URL the running command uses, for its error messages."""
    ctx = click.get_current_context(silent=True)
    if ctx is not None:
        ctx.meta[_BACKEND_KEY] = redacted_url(url)


def _secrets(ctx: click.Context) -> list[str]:
    urls = [word for word in ctx.meta.get(_ARGS_KEY, []) if "://" in word]
    urls.append(os.environ.get("ASYNCMQ_BACKEND", ""))
    with suppress(Exception):  # settings that fail to load name no URL
        from asyncmq.conf import active_settings

        configured = active_settings().backend
        urls.append(configured if isinstance(configured, str) else "")
    return sorted({secret for url in urls for secret in url_secrets(url)}, key=len, reverse=True)


def mask_secrets(ctx: click.Context, text: str) -> str:
    """`text` with every password of the backend URLs the command was given as `***`: a
    driver may quote a URL it misread."""
    for secret in _secrets(ctx):
        text = text.replace(secret, "***")
    return text


def fail(ctx: click.Context, exc: Exception, debug: bool) -> None:
    """End the command for `exc`: one line and its exit code when the failure is expected
    (the traceback too with `debug`), else the traceback with secrets masked. Returns only
    when the traceback holds no secret: the caller re-raises, and Python prints it."""
    known = classify(exc, ctx.meta.get(_BACKEND_KEY))
    text = "".join(traceback.format_exception(exc))
    masked = mask_secrets(ctx, text)
    if known is None:
        if masked != text:
            click.echo(masked, err=True, nl=False)
            ctx.exit(1)
        return
    if debug:
        click.echo(masked, err=True, nl=False)
    code, message = known
    raise CommandFailure(code, mask_secrets(ctx, message)) from None
