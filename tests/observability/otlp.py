"""The trace half of an OTLP/HTTP collector, on loopback, for the tests to export to."""

from __future__ import annotations

import gzip
from collections.abc import Sequence
from contextlib import AbstractContextManager
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from tests.serving import serving


class OTLPReceiver(HTTPServer):
    """The trace half of an OTLP/HTTP collector: keeps each export request it is sent."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _ExportHandler)
        self.requests: list[ExportTraceServiceRequest] = []
        self.paths: list[str] = []

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"


class _ExportHandler(BaseHTTPRequestHandler):
    server: OTLPReceiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        self.server.paths.append(self.path)
        self.server.requests.append(ExportTraceServiceRequest.FromString(body))
        reply = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the test reads what was received, not the access log."""


def received_spans(requests: Sequence[ExportTraceServiceRequest]) -> list[tuple[str, str, Any]]:
    """(resource service.name, scope name, span) for every span in `requests`."""
    found = []
    for request in requests:
        for resource_spans in request.resource_spans:
            service = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                scope = scope_spans.scope.name
                found += [(service["service.name"], scope, span) for span in scope_spans.spans]
    return found


def running_receiver() -> AbstractContextManager[OTLPReceiver]:
    return serving(OTLPReceiver())
