"""The metrics endpoint: `/metrics` (Prometheus text, or OpenMetrics with exemplars when the
scraper asks for it in `Accept`) and `/healthz`, served from a thread so a busy event loop
never delays a scrape. It binds 127.0.0.1 unless told otherwise: exposing metrics beyond
the host is a decision, not a default.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.registry import Collector

__all__ = ["MetricsServer"]

StartResponse = Callable[..., Any]


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # scrapes are not news
        pass


class MetricsServer:
    """Serves `registry`; `collectors` are registered in it for as long as the server runs."""

    def __init__(
        self,
        registry: CollectorRegistry,
        host: str = "127.0.0.1",
        port: int = 9100,
        collectors: Sequence[Collector] = (),
    ) -> None:
        self.registry = registry
        self._collectors = list(collectors)
        metrics = make_wsgi_app(registry)

        def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
            if environ.get("PATH_INFO") == "/healthz":
                start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
                return [b"ok\n"]
            return metrics(environ, start_response)  # type: ignore[no-any-return]

        self._server = make_server(host, port, app, _ThreadingServer, handler_class=_QuietHandler)
        self.host, self.port = host, self._server.server_port
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="asyncmq-metrics", daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/metrics"

    def start(self) -> MetricsServer:
        for collector in self._collectors:
            self.registry.register(collector)
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
        for collector in self._collectors:
            self.registry.unregister(collector)
