"""What every command shares, so each command module holds only its own logic.

Choosing the backend (`--backend URL`, else the settings) and naming it in the output,
importing the user's task modules (`--app`), printing results as JSON (`--json`) or rich
tables, turning asyncmq errors into one-line messages, the optional metrics server, and stop
signals for long-running commands.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import signal
import sys
import traceback
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeVar

import click
import orjson

from asyncmq.backends.base import redacted_url
from asyncmq.cli.failures import (
    DEBUG_ENV,
    CommandFailure,
    ExitCode,
    fail,
    mask_secrets,
    note_backend,
    remember_args,
)
from asyncmq.errors import InvalidQueueNameError
from asyncmq.job import validate_queue_name

if TYPE_CHECKING:
    from asyncmq.backends.base import BaseBackend

__all__ = [
    "IMPLICIT_DEFAULT_NOTE",
    "AsyncMQGroup",
    "BackendLabel",
    "backend_options",
    "check_reachable",
    "describe_backend",
    "echo_json",
    "format_time",
    "import_settings_modules",
    "json_option",
    "metrics_endpoint",
    "metrics_port_option",
    "multiprocess_metrics_endpoint",
    "open_backend",
    "print_table",
    "queue_option",
    "resolve_backend",
    "run",
    "stop_signals",
    "valid_queue_names",
]

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


class AsyncMQGroup(click.Group):
    """The root group: every sub-command runs inside its `invoke`, so an error any of them
    raises ends here, as one line and its exit code (`asyncmq.cli.failures`), or, for an
    error nobody expected, as a traceback with the backend's password masked."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        remember_args(ctx, args)
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CommandFailure as exc:
            if debugging(ctx):
                click.echo(mask_secrets(ctx, "".join(traceback.format_exception(exc))), err=True, nl=False)
            raise
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as exc:
            fail(ctx, exc, debugging(ctx))
            raise


_DEBUG_KEY = "asyncmq.debug"


def set_debug(ctx: click.Context, debug: bool) -> None:
    """`asyncmq --debug`: failures print their traceback as well as their one line."""
    ctx.meta[_DEBUG_KEY] = debug


def debugging(ctx: click.Context) -> bool:
    """`--debug` was given, or ASYNCMQ_DEBUG is set to a true value."""
    if ctx.meta.get(_DEBUG_KEY):
        return True
    return os.environ.get(DEBUG_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run one command's coroutine on a fresh event loop: uvloop's when it is installed
    (the `redis` extra brings it), which cuts the loop's and sockets' cost per job.

    Ctrl-C and SIGTERM (what `kill`, systemd and Kubernetes send) cancel the coroutine, so its
    cleanup runs (a bench removes its queue, connections close), then `KeyboardInterrupt`.
    Both go through the loop's own signal handling: a handler set with `signal.signal` runs
    only once a uvloop loop wakes for something else. Commands that stop gracefully
    (`worker start`, `demo`) take both signals over with `stop_signals` while they run."""
    interrupted = False

    async def cancelled_by_signals() -> T:
        task = asyncio.current_task()
        assert task is not None

        def on_signal() -> None:
            nonlocal interrupted
            interrupted = True
            task.cancel()

        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with suppress(NotImplementedError, RuntimeError, ValueError):  # no signals in this thread
                loop.add_signal_handler(sig, on_signal)
        return await main

    try:
        try:
            import uvloop
        except ImportError:
            return asyncio.run(cancelled_by_signals())
        return uvloop.run(cancelled_by_signals())
    except asyncio.CancelledError:
        if interrupted:
            raise KeyboardInterrupt from None
        raise


# -- options ---------------------------------------------------------------------------
def _import_modules(modules: Sequence[str]) -> str | None:
    """Import each module so its tasks register, or say why one cannot be; run from a
    project directory, the way `python -m` would, so `myproject.tasks` works from the
    console script too."""
    if modules and "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as exc:  # anything the user's module raises makes it a bad name
            return f"cannot import {name!r}: {type(exc).__name__}: {exc}"
    return None


def _import_apps(ctx: click.Context, param: click.Parameter, modules: tuple[str, ...]) -> tuple[str, ...]:
    problem = _import_modules(modules)
    if problem is not None:
        raise click.BadParameter(problem, ctx=ctx, param=param)
    return modules


def import_settings_modules() -> None:
    """Import the settings' `app_modules` (AsyncMQ's `tasks`) as `--app` imports its modules;
    after them, since an `--app` module may choose the settings."""
    from asyncmq.conf import settings

    problem = _import_modules(settings.app_modules)
    if problem is not None:
        raise CommandFailure(ExitCode.CONFIGURATION, f"settings app_modules: {problem}")


def backend_options(fn: F) -> F:
    """`--backend URL` (passed as `backend`) and repeatable `--app MODULE` (imported at parse)."""
    fn = click.option(
        "--app",
        "apps",
        multiple=True,
        metavar="MODULE",
        expose_value=False,
        callback=_import_apps,
        help="Import this module first so its tasks and settings load (repeatable).",
    )(fn)
    return click.option(
        "--backend",
        metavar="URL",
        default=None,
        help="Backend URL (memory://, ...); default: the settings "
        "(ASYNCMQ_BACKEND, ASYNCMQ_SETTINGS_MODULE).",
    )(fn)


def json_option(fn: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")(fn)


def metrics_port_option(fn: F) -> F:
    """`--metrics-port P` and `--metrics-host H` (default 127.0.0.1)."""
    fn = click.option(
        "--metrics-host",
        default="127.0.0.1",
        show_default=True,
        help="Address to serve metrics on; 0.0.0.0 exposes them beyond this host.",
    )(fn)
    return click.option(
        "--metrics-port",
        type=click.IntRange(0, 65535),
        default=None,
        help="Serve Prometheus metrics (/metrics) and /healthz on this port.",
    )(fn)


def valid_queue_names(ctx: click.Context, param: click.Parameter, value: T) -> T:
    """Option/argument callback: a bad queue name is a usage error (exit 2)."""
    names = value if isinstance(value, tuple) else (value,)
    for name in names:
        if name is None:
            continue
        try:
            validate_queue_name(name)
        except InvalidQueueNameError as exc:
            raise click.BadParameter(str(exc), ctx=ctx, param=param) from None
    return value


def queue_option(fn: F) -> F:
    return click.option(
        "--queue",
        "-q",
        "queue_name",
        required=True,
        metavar="QUEUE",
        callback=valid_queue_names,
        help="The queue the job belongs to.",
    )(fn)


# -- backend ---------------------------------------------------------------------------
def resolve_backend(url: str | None) -> BaseBackend:
    """`--backend URL` when given, else the settings' backend. The settings are loaded, so
    checked, either way: a bad ASYNCMQ_* variable is refused before the command does anything."""
    from asyncmq.backends import backend_from_url
    from asyncmq.conf import active_settings, settings
    from asyncmq.runtime import default_backend

    active_settings()
    if url:
        note_backend(url)
        return backend_from_url(url)
    if isinstance(settings.backend, str):
        note_backend(settings.backend)
    return default_backend()


async def check_reachable(backend: BaseBackend) -> None:
    """Read the backend once, so a long-running command that cannot reach it (or is refused
    the login) fails in one line before it says it started."""
    await backend.connect()
    await backend.queues()


@asynccontextmanager
async def open_backend(url: str | None) -> AsyncIterator[BaseBackend]:
    backend = resolve_backend(url)
    await backend.connect()
    try:
        yield backend
    finally:
        await backend.close()


# -- naming the backend ----------------------------------------------------------------
#: Said of the backend a command falls back to when nobody chose one: memory of its own.
IMPLICIT_DEFAULT_NOTE = (
    "the in-process default: this command sees only its own process; pass --backend "
    "redis://HOST:6379/0 or set ASYNCMQ_BACKEND to read a worker's queues"
)
_DEFAULT_URL = "memory://"


@dataclass(frozen=True)
class BackendLabel:
    """Which backend a command read: its URL with the password masked (`url`, also the `backend`
    key of `--json` output), and whether it is the implicit in-process default."""

    url: str
    implicit_default: bool = False

    @property
    def note(self) -> str:
        """` (the in-process default: ...how to read a worker's queues)`, else empty."""
        return f" ({IMPLICIT_DEFAULT_NOTE})" if self.implicit_default else ""

    def line(self) -> str:
        return f"Backend: {self.url}{self.note}"


def _instance_label(backend: BaseBackend) -> str:
    """A backend the settings hold as an instance: only the memory one has a URL to show."""
    if backend.name == "memory":
        return _DEFAULT_URL
    return f"{backend.name} ({type(backend).__name__} from the settings)"


def describe_backend(url: str | None) -> BackendLabel:
    """Name the backend `resolve_backend(url)` picks. Implicit: no `--backend`, no
    `ASYNCMQ_BACKEND`, and the settings keep the default `memory://`."""
    from asyncmq.conf import settings

    if url:
        return BackendLabel(redacted_url(url))
    configured = settings.backend
    if not isinstance(configured, str):
        return BackendLabel(_instance_label(configured))
    implicit = configured == _DEFAULT_URL and "ASYNCMQ_BACKEND" not in os.environ
    return BackendLabel(redacted_url(configured), implicit)


# -- metrics ---------------------------------------------------------------------------
def _observability() -> ModuleType:
    try:
        import asyncmq.observability as observability
    except ImportError as exc:
        raise CommandFailure(
            ExitCode.CONFIGURATION,
            f"--metrics-port needs the observability extra: pip install 'asyncmq[observability]' ({exc})",
        ) from None
    return observability


@asynccontextmanager
async def _serving(server: Any) -> AsyncIterator[str]:
    click.echo(f"Metrics on {server.url} (health: http://{server.host}:{server.port}/healthz)", err=True)
    try:
        yield server.url
    finally:
        server.close()


def port_failure(option: str, port: int, host: str, exc: OSError) -> CommandFailure:
    """A port the command was told to listen on cannot be had: say which option chose it."""
    why = exc.strerror or str(exc)
    return CommandFailure(
        ExitCode.PORT,
        f"{option} {port}: cannot listen on {host}:{port} ({why}): "
        f"choose another {option}, or stop what listens there",
    )


@asynccontextmanager
async def metrics_endpoint(
    port: int | None,
    host: str,
    backend: BaseBackend,
    *,
    job_metrics: bool = True,
    any_port: bool = False,
    option: str = "--metrics-port",
) -> AsyncIterator[str | None]:
    """Serve metrics for the command's lifetime when `port` is given, printing the address
    (and giving its URL, else None). Without the observability extra installed, stop with a
    message naming it. A port in use stops the command too (naming `option`, the flag that
    chose it), unless `any_port` lets it take a free one (the demo)."""
    if port is None:
        yield None
        return
    serve = _observability().serve_metrics
    try:
        server = serve(backend, port=port, host=host, job_metrics=job_metrics)
    except OSError as exc:
        if not any_port:
            raise port_failure(option, port, host, exc) from None
        server = serve(backend, port=0, host=host, job_metrics=job_metrics)
    async with _serving(server) as url:
        yield url


@asynccontextmanager
async def multiprocess_metrics_endpoint(
    port: int | None, host: str, backend: BaseBackend, directory: str | None
) -> AsyncIterator[None]:
    """The parent of `--processes`: serve the children's summed metrics and the queue state."""
    if port is None or directory is None:
        yield
        return
    serve = _observability().serve_multiprocess_metrics
    try:
        server = serve(backend, directory, port=port, host=host)
    except OSError as exc:
        raise port_failure("--metrics-port", port, host, exc) from None
    async with _serving(server):
        yield


# -- signals ---------------------------------------------------------------------------
@contextmanager
def stop_signals(on_signal: Callable[[signal.Signals], None]) -> Iterator[None]:
    """Route SIGTERM and SIGINT to `on_signal` while inside; needs a running loop."""
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, on_signal, sig)
        except (NotImplementedError, RuntimeError, ValueError):
            continue  # not the main thread, or no signal support
        installed.append(sig)
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


# -- output ----------------------------------------------------------------------------
def echo_json(data: object) -> None:
    """Indented, key-sorted JSON: stable for scripts and for tests."""
    click.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode())


def format_time(epoch_s: float | None) -> str:
    if epoch_s is None:
        return "-"
    return datetime.fromtimestamp(epoch_s).strftime("%Y-%m-%d %H:%M:%S")


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return str(value)
    return orjson.dumps(value).decode()


def print_table(columns: Sequence[str], rows: Iterable[Sequence[object]], title: str | None = None) -> None:
    """A rich table on stdout; the first column (names, ids) never wraps on a terminal."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for index, column in enumerate(columns):
        table.add_column(column, no_wrap=index == 0, overflow="fold")
    for row in rows:
        table.add_row(*(_cell(value) for value in row))
    console = Console()
    if not console.is_terminal:
        console.width = 1000  # a pipe has no width: let the table take what it needs
    console.print(table)
