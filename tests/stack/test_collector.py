"""exporters/otel-collector.yml: OTLP in on every interface, batched, out to the trace backend."""

from __future__ import annotations

from typing import Any

from tests.stack.support import ROOT, address, command, host_path, listening_ports, load_yaml, option

CONFIG = ROOT / "exporters" / "otel-collector.yml"


def _config() -> dict[str, Any]:
    loaded: dict[str, Any] = load_yaml(CONFIG)
    return loaded


def test_the_collector_reads_the_config_compose_mounts() -> None:
    config_file = option(command("otel-collector"), "--config")
    assert config_file is not None
    assert host_path("otel-collector", config_file) == CONFIG


def test_the_collector_receives_otlp_over_grpc_and_http_on_every_interface() -> None:
    protocols = _config()["receivers"]["otlp"]["protocols"]
    assert {name: protocol["endpoint"] for name, protocol in protocols.items()} == {
        "grpc": "0.0.0.0:4317",
        "http": "0.0.0.0:4318",
    }


def test_every_pipeline_component_is_defined() -> None:
    config = _config()
    for name, pipeline in config["service"]["pipelines"].items():
        for kind in ("receivers", "processors", "exporters"):
            undefined = set(pipeline.get(kind, [])) - set(config.get(kind) or {})
            assert not undefined, f"pipeline {name} uses undefined {kind}: {undefined}"


def test_the_trace_pipeline_batches_and_exports_to_the_trace_backend() -> None:
    config = _config()
    traces = config["service"]["pipelines"]["traces"]
    assert "otlp" in traces["receivers"]
    assert "batch" in traces["processors"]
    assert traces["exporters"]
    for exporter in traces["exporters"]:
        host, port = address(config["exporters"][exporter]["endpoint"])
        assert host == "jaeger"
        assert port in listening_ports(host), f"{exporter}: {host} does not listen on {port}"
