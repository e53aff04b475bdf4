"""docker-compose.observability.yml, read statically: the services, what they mount and
build from, the ports they publish, and the asyncmq commands they run."""

from __future__ import annotations

import pytest

from tests.stack.support import (
    ROOT,
    address,
    asyncmq_help,
    asyncmq_services,
    bind_mounts,
    command,
    compose,
    listening_ports,
    option,
    service,
)

SERVICES = {
    "redis",
    "postgres",
    "worker",
    "exporter",
    "prometheus",
    "alertmanager",
    "grafana",
    "otel-collector",
    "jaeger",
}
_MOUNTS = [(name, source) for name in compose()["services"] for source, _ in bind_mounts(name)]


def test_the_stack_has_every_service() -> None:
    assert set(compose()["services"]) >= SERVICES


@pytest.mark.parametrize(("name", "source"), _MOUNTS, ids=[f"{n}:{s}" for n, s in _MOUNTS])
def test_every_mounted_path_exists_in_the_repository(name: str, source: str) -> None:
    # Docker bind-mounts a missing file as an empty directory, and the service fails later.
    assert not source.startswith("/"), f"{name} mounts {source}: outside the repository"
    assert (ROOT / source).exists(), f"{name} mounts {source}, which does not exist"


@pytest.mark.parametrize("name", asyncmq_services())
def test_every_asyncmq_service_builds_from_a_dockerfile_in_the_repository(name: str) -> None:
    build = service(name)["build"]
    context = ROOT / build["context"]
    assert context.is_dir()
    assert (context / build.get("dockerfile", "Dockerfile")).is_file()


def test_every_published_port_is_bound_to_loopback() -> None:
    published = [
        (name, str(port)) for name, spec in compose()["services"].items() for port in spec.get("ports", [])
    ]
    assert published
    assert [(name, port) for name, port in published if not port.startswith("127.0.0.1:")] == []


def test_every_image_is_pinned_to_a_version() -> None:
    images = [spec["image"] for spec in compose()["services"].values() if "image" in spec]
    assert [image for image in images if ":" not in image or image.endswith(":latest")] == []


@pytest.mark.parametrize("name", asyncmq_services())
def test_every_asyncmq_command_is_one_the_cli_accepts(name: str) -> None:
    result = asyncmq_help(command(name))
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(("name", "host_option"), [("worker", "--metrics-host"), ("exporter", "--host")])
def test_the_metrics_endpoints_listen_beyond_their_container(name: str, host_option: str) -> None:
    # The default, 127.0.0.1, would keep Prometheus (another container) out.
    assert option(command(name), host_option) == "0.0.0.0"
    assert listening_ports(name), f"{name} serves no metrics port"


@pytest.mark.parametrize("name", asyncmq_services())
def test_every_asyncmq_healthcheck_probes_the_port_its_service_listens_on(name: str) -> None:
    probe = " ".join(service(name)["healthcheck"]["test"])
    assert any(f":{port}/healthz" in probe for port in listening_ports(name)), probe


def test_the_worker_runs_on_redis() -> None:
    backend = option(command("worker"), "--backend")
    assert backend is not None
    assert address(backend) == ("redis", 6379)
    assert option(command("exporter"), "--backend") == backend


def test_the_worker_sends_its_traces_to_the_collector_over_otlp_http() -> None:
    endpoint = option(command("worker"), "--otlp-endpoint")
    assert endpoint is not None
    assert endpoint.startswith("http://")
    host, port = address(endpoint)
    assert host == "otel-collector"
    assert port == 4318
    assert port in listening_ports(host)
