"""Real Prometheus and Alertmanager servers for the end-to-end test, on free loopback ports,
each with its own data folder, and a webhook receiver standing in for the pager and the
ticket system."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.observability.support import free_port
from tests.serving import serving

__all__ = ["Prometheus", "Server", "WebhookReceiver", "need_binary", "running_server", "webhook_receiver"]


def need_binary(name: str) -> str:
    """The path of a server binary that scripts/services.sh installs; a skip without it,
    except in CI, where a missing server is a failure."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is not installed: scripts/services.sh installs it")
        pytest.skip(f"{name} is not installed (scripts/services.sh installs it)")
    return path


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def get(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}{path}{query}", timeout=10) as response:
            return json.load(response)


class Prometheus(Server):
    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's result vector; a query Prometheus rejects fails the test."""
        reply = self.get("/api/v1/query", query=expr)
        assert reply["status"] == "success", (expr, reply)
        result: list[dict[str, Any]] = reply["data"]["result"]
        return result

    def alerts(self) -> list[dict[str, Any]]:
        alerts: list[dict[str, Any]] = self.get("/api/v1/alerts")["data"]["alerts"]
        return alerts


@contextmanager
def running_server(
    kind: type[Server], argv: list[str], port: int, log: Path, ready_path: str
) -> Iterator[Server]:
    """Start a server, wait for its readiness endpoint, and stop it on the way out."""
    with log.open("wb") as output:
        process = subprocess.Popen(argv, stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    server = kind(f"http://127.0.0.1:{port}", process, log)
    try:
        _wait_ready(server, ready_path)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_ready(server: Server, path: str, deadline_s: float = 30) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise AssertionError(f"{server.url} exited:\n{server.log.read_text()}")
        try:
            with urllib.request.urlopen(server.url + path, timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"{server.url} not ready after {deadline_s}s:\n{server.log.read_text()}")


class WebhookReceiver(HTTPServer):
    """Keeps each Alertmanager notification it is sent, by path (`/page`, `/ticket`)."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", free_port()), _Handler)
        self.received: list[tuple[str, dict[str, Any]]] = []

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def alerts_at(self, path: str) -> list[dict[str, Any]]:
        return [alert for where, body in list(self.received) if where == path for alert in body["alerts"]]


class _Handler(BaseHTTPRequestHandler):
    server: WebhookReceiver

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.received.append((self.path, body))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the test reads what was received."""


def webhook_receiver() -> AbstractContextManager[WebhookReceiver]:
    return serving(WebhookReceiver())
