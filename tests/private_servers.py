"""Servers of a test's own, for tests that stop, restart or cut them: never the shared ones
scripts/services.sh starts. Each listens on free loopback ports, keeps its data in a
directory of its own (so a restart finds it again) and is killed and deleted by `remove()`.

    server = RedisServer(); server.start(); ...; server.restart(); server.remove()

Every method blocks (they run programs and wait on ports): from a coroutine, call them
through `asyncio.to_thread`. `cut()` closes every client connection the way each server
does it itself (CLIENT KILL, pg_terminate_backend), or, for the MongoDB test server, which
has no such command, by destroying the sockets in the kernel (`ss -K`, root only).
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from abc import ABC, abstractmethod
from pathlib import Path

import pytest

__all__ = [
    "MongoServer",
    "PostgresServer",
    "PrivateServer",
    "RedisClusterServer",
    "RedisServer",
    "free_port",
    "missing",
]

ROOT = Path(__file__).resolve().parents[1]
#: How long a server may take to start or stop.
START_S = 30.0
_POLL_S = 0.05


def missing(message: str) -> None:
    """A program the test needs is missing: skip locally, fail in CI."""
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def free_port(*, also_plus: int = 0) -> int:
    """A loopback port nothing listens on (and, with `also_plus`, free at that offset too:
    a Redis Cluster node also binds its bus port, port + 10000)."""
    while True:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port: int = probe.getsockname()[1]
        if not also_plus:
            return port
        if port + also_plus < 65536 and not _answers(port + also_plus):
            return port


def _answers(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


def _wait_until(check: object, what: str, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + START_S
    while not check():  # type: ignore[operator]
        if process is not None and process.poll() is not None:
            raise AssertionError(f"{what}: the server exited with {process.returncode}")
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {START_S}s for {what}")
        time.sleep(_POLL_S)


def _run(*command: str) -> str:
    done = subprocess.run(command, capture_output=True, text=True, timeout=START_S, check=True)
    return done.stdout


class PrivateServer(ABC):
    """One server (or cluster) of the test's own. `url` is what asyncmq connects to."""

    url: str

    def __init__(self) -> None:
        # Under /tmp, not pytest's tmp_path: the postgres user must reach a cluster's files.
        self.directory = Path(tempfile.mkdtemp(prefix=f"asyncmq-{type(self).__name__.lower()}-"))

    @abstractmethod
    def start(self) -> None:
        """Start and wait until it answers (with the data of an earlier run, if any)."""

    @abstractmethod
    def stop(self) -> None:
        """Stop cleanly: everything it acknowledged is on disk."""

    @abstractmethod
    def cut(self) -> int:
        """Close every client connection; returns how many were closed."""

    @abstractmethod
    def remove(self) -> None:
        """Kill it if running and delete its data."""

    def restart(self) -> None:
        self.stop()
        self.start()


# -- Redis ------------------------------------------------------------------------------
def _redis_server() -> str:
    executable = shutil.which("redis-server")
    if executable is None:
        missing("redis-server is not installed: scripts/services.sh installs it")
    assert executable is not None
    return executable


class _RedisNode:
    """One redis-server persisting to an append-only file, so a restart keeps its data."""

    def __init__(self, directory: Path, port: int, *options: str) -> None:
        self.directory, self.port, self.options = directory, port, options
        self.process: subprocess.Popen[bytes] | None = None
        directory.mkdir(parents=True, exist_ok=True)

    def cli(self, *command: str) -> str:
        return _run("redis-cli", "-h", "127.0.0.1", "-p", str(self.port), *command)

    def start(self) -> None:
        self.process = subprocess.Popen(
            [_redis_server(), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes", "--dir", str(self.directory),
             "--logfile", str(self.directory / "redis.log"), *self.options],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        _wait_until(self._pings, f"redis-server on port {self.port}", self.process)

    def _pings(self) -> bool:
        try:
            return self.cli("ping").strip() == "PONG"
        except subprocess.CalledProcessError:
            return False

    def stop(self) -> None:
        """SHUTDOWN: the server writes its append-only file out and exits."""
        assert self.process is not None
        subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(self.port), "shutdown"],
                       capture_output=True, timeout=START_S)  # fmt: skip
        self.process.wait(START_S)

    def cut(self) -> int:
        """CLIENT KILL every normal connection but the one asking."""
        return int(self.cli("client", "kill", "type", "normal", "skipme", "yes").strip() or 0)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(START_S)


class RedisServer(PrivateServer):
    """A redis-server on a free port, AOF on."""

    def __init__(self) -> None:
        super().__init__()
        self.node = _RedisNode(self.directory, free_port())
        self.url = f"redis://127.0.0.1:{self.node.port}/0"

    def start(self) -> None:
        self.node.start()

    def stop(self) -> None:
        self.node.stop()

    def cut(self) -> int:
        return self.node.cut()

    def remove(self) -> None:
        self.node.kill()
        shutil.rmtree(self.directory, ignore_errors=True)


class RedisClusterServer(PrivateServer):
    """A three-node Redis Cluster (no replicas) on free ports, AOF on every node. A restart
    stops every node and starts them again: they find each other through their nodes.conf."""

    def __init__(self, nodes: int = 3) -> None:
        super().__init__()
        self.nodes: list[_RedisNode] = []
        for n in range(nodes):
            port = free_port(also_plus=10000)
            while any(node.port == port for node in self.nodes):
                port = free_port(also_plus=10000)
            self.nodes.append(
                _RedisNode(self.directory / f"node-{n}", port, "--cluster-enabled", "yes",
                           "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000")
            )  # fmt: skip
        self.url = f"redis+cluster://127.0.0.1:{self.nodes[0].port}"
        self._created = False

    def start(self) -> None:
        for node in self.nodes:
            node.start()
        if not self._created:
            addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
            _run("redis-cli", "--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes")
            self._created = True
        _wait_until(self._ok, "the cluster to be ok on every node")

    def _ok(self) -> bool:
        try:
            return all("cluster_state:ok" in node.cli("cluster", "info") for node in self.nodes)
        except subprocess.CalledProcessError:
            return False

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def cut(self) -> int:
        return sum(node.cut() for node in self.nodes)

    def remove(self) -> None:
        for node in self.nodes:
            node.kill()
        shutil.rmtree(self.directory, ignore_errors=True)


# -- PostgreSQL -------------------------------------------------------------------------
class PostgresServer(PrivateServer):
    """A PostgreSQL cluster made with initdb, run with pg_ctl on a free port, owned by the
    `postgres` user (initdb refuses root): the test must run as root."""

    def __init__(self) -> None:
        found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
        if not found:
            missing("no PostgreSQL server binaries (initdb, pg_ctl): scripts/services.sh installs them")
        if os.geteuid() != 0 or shutil.which("su") is None:
            missing("a private PostgreSQL cluster needs root (to run initdb as postgres)")
        super().__init__()
        self.bin = found[-1].parent
        self.port = free_port()
        self.data = self.directory / "data"
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        shutil.chown(self.directory, "postgres", "postgres")

    def _as_postgres(self, *command: str) -> str:
        return _run("su", "postgres", "-c", " ".join(command))

    def start(self) -> None:
        if not self.data.exists():
            self._as_postgres(str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres")
        options = (
            f"'-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={self.directory}'"
        )
        self._as_postgres(str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options, "-w", "-l",
                          str(self.directory / "log"), "start")  # fmt: skip

    def stop(self) -> None:
        """A fast shutdown: open transactions are rolled back, committed ones are on disk."""
        self._as_postgres(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def cut(self) -> int:
        killed = _run(
            "psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", "postgres", "-tA", "-c",
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE pid <> pg_backend_pid() AND backend_type = 'client backend'",
        )  # fmt: skip
        return int(killed.strip())

    def remove(self) -> None:
        subprocess.run(["su", "postgres", "-c", f"{self.bin / 'pg_ctl'} -D {self.data} -m immediate stop"],
                       capture_output=True, timeout=START_S)  # fmt: skip
        shutil.rmtree(self.directory, ignore_errors=True)


# -- MongoDB (the nx-27017 wire-protocol server) ----------------------------------------
def _nx_python() -> str:
    """The python of nx-27017's own venv, which scripts/services.sh makes under .services
    (ASYNCMQ_TEST_NX_PYTHON names it when the services live elsewhere)."""
    named = os.environ.get("ASYNCMQ_TEST_NX_PYTHON")
    found = [named] if named else sorted(glob.glob(str(ROOT / ".services" / "nx-*" / "bin" / "python")))
    if not found or not os.path.exists(found[-1]):
        missing("the MongoDB test server nx-27017 is not installed: scripts/services.sh installs it")
    return found[-1]


class MongoServer(PrivateServer):
    """nx-27017 on a free port, on an SQLite file (not in memory), so a restart keeps the data."""

    def __init__(self) -> None:
        self.python = _nx_python()
        super().__init__()
        self.port = free_port()
        self.url = f"mongodb://127.0.0.1:{self.port}/asyncmq?directConnection=true"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with (self.directory / "out.log").open("ab") as out:
            self.process = subprocess.Popen(
                [self.python, str(ROOT / "scripts" / "mongo_test_server.py"),
                 "--db", str(self.directory / "nx.db"), "--host", "127.0.0.1", "-p", str(self.port),
                 "--log-file", str(self.directory / "nx.log"),
                 "--pid-file", str(self.directory / "nx.pid")],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        _wait_until(lambda: _answers(self.port), f"nx-27017 on port {self.port}", self.process)

    def stop(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(START_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(START_S)

    def cut(self) -> int:
        """Destroy both ends of every connection to the server's port in the kernel: each side
        sees its connection reset, as when a MongoDB server closes its connections."""
        if os.geteuid() != 0 or shutil.which("ss") is None:
            missing("cutting the MongoDB test server's connections needs root and ss (iproute2)")
        port = str(self.port)
        listed = _run("ss", "-tnHK", "(", "dport", "=", f":{port}", "or", "sport", "=", f":{port}", ")")
        return sum(1 for line in listed.splitlines() if line.strip()) // 2  # both ends are listed

    def remove(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(START_S)
        shutil.rmtree(self.directory, ignore_errors=True)
