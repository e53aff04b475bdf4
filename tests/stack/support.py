"""Reading the observability stack's files (the compose file, the configs it mounts, the
Dockerfile) so the tests can check that they agree with one another without running Docker."""

from __future__ import annotations

import functools
import json
import shlex
import subprocess
import sys
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import yaml

__all__ = [
    "COMPOSE_FILE",
    "ROOT",
    "address",
    "asyncmq_help",
    "asyncmq_services",
    "bind_mounts",
    "command",
    "compose",
    "dockerfile_instructions",
    "exec_form",
    "host_path",
    "listening_ports",
    "load_yaml",
    "option",
    "service",
]

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.observability.yml"

#: What the third-party images listen on by default (their documented ports).
_IMAGE_PORTS = {
    "redis": {6379},
    "postgres": {5432},
    "prom/prometheus": {9090},
    "prom/alertmanager": {9093},
    "grafana/grafana": {3000},
    "jaegertracing/jaeger": {4317, 4318, 16686},
}
#: The asyncmq options naming the port a command serves metrics on.
_PORT_OPTIONS = ("--metrics-port", "--port")


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


@functools.cache
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = load_yaml(COMPOSE_FILE)
    return loaded


def service(name: str) -> dict[str, Any]:
    found: dict[str, Any] = compose()["services"][name]
    return found


def asyncmq_services() -> list[str]:
    """The services built from the repository's Dockerfile: their command is asyncmq's."""
    return [name for name, spec in compose()["services"].items() if "build" in spec]


def command(name: str) -> list[str]:
    value = service(name).get("command", [])
    return shlex.split(value) if isinstance(value, str) else [str(arg) for arg in value]


def option(argv: list[str], name: str) -> str | None:
    """The value of `name` in `argv`, given as `--name value` or `--name=value`."""
    for index, arg in enumerate(argv):
        if arg == name and index + 1 < len(argv):
            return argv[index + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def bind_mounts(name: str) -> list[tuple[str, str]]:
    """(source, target) of each host path `name` mounts; named volumes are left out."""
    mounts = []
    for volume in service(name).get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith((".", "/")):
            mounts.append((source, target))
    return mounts


def host_path(name: str, container_path: str) -> Path | None:
    """Where `container_path` of service `name` comes from in the repository, if mounted."""
    wanted = PurePosixPath(container_path)
    for source, target in bind_mounts(name):
        if wanted == PurePosixPath(target) or PurePosixPath(target) in wanted.parents:
            return ROOT / source / wanted.relative_to(target)
    return None


def address(value: str) -> tuple[str, int]:
    """(host, port) of `host:port` or of a URL carrying an explicit port."""
    parts = urlsplit(value if "://" in value else f"//{value}")
    assert parts.hostname is not None, value
    assert parts.port is not None, f"{value} names no port"
    return parts.hostname, parts.port


def listening_ports(name: str) -> set[int]:
    """The ports service `name` listens on: an asyncmq command's port option, the
    collector's receivers, else the image's default ports."""
    if name in asyncmq_services():
        return {int(value) for opt in _PORT_OPTIONS if (value := option(command(name), opt)) is not None}
    if name == "otel-collector":
        config = load_yaml(ROOT / "exporters" / "otel-collector.yml")
        protocols = config["receivers"]["otlp"]["protocols"]
        return {address(protocol["endpoint"])[1] for protocol in protocols.values()}
    image = service(name)["image"].rsplit(":", 1)[0]
    return _IMAGE_PORTS[image]


def asyncmq_help(argv: list[str]) -> subprocess.CompletedProcess[str]:
    """Run `asyncmq ARGV --help`: click parses every option name in ARGV and stops at help,
    so an unknown command or option fails while nothing connects or runs."""
    script = Path(sys.executable).with_name("asyncmq")
    return subprocess.run(
        [str(script), *argv, "--help"], capture_output=True, text=True, timeout=60, check=False
    )


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of each instruction, continuation lines joined."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        pending += stripped.removesuffix("\\").strip() + " "
        if not stripped.endswith("\\"):
            keyword, _, arguments = pending.strip().partition(" ")
            instructions.append((keyword.upper(), arguments.strip()))
            pending = ""
    return instructions


def exec_form(arguments: str) -> list[str]:
    """The argv of a CMD or ENTRYPOINT, in JSON (exec) form or shell form."""
    if arguments.startswith("["):
        return [str(arg) for arg in json.loads(arguments)]
    return shlex.split(arguments)
