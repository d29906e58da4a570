"""A real Redis Cluster for tests: three masters on free loopback ports, in a temporary directory.

>>> cluster = LocalRedisCluster(Path("/tmp/x")).start()
>>> cluster.connection_string
'127.0.0.1:31001,127.0.0.1:31002,127.0.0.1:31003'
>>> cluster.stop()

Each node is ``redis-server --cluster-enabled yes`` as a subprocess (no persistence); the slots are
assigned with ``redis-cli --cluster create``; :meth:`start` returns once every node reports
``cluster_state:ok``.

With ``tls=`` (a :class:`.redis_tls.TlsFiles`) the nodes serve TLS only, clients and the cluster bus
alike (``--tls-cluster yes``), and :attr:`LocalRedisCluster.connection_string` carries the options of
a verified TLS connection (plus the client certificate with ``auth_clients=True``).
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import redis

from backends.processes import stop_processes
from backends.redis_tls import TlsFiles, tls_arguments, wait_tls

BUS_OFFSET = 10_000  # Redis Cluster's bus port is the client port + 10000


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port_pair(taken: set[int]) -> int:
    """A port P such that P and its cluster bus port P + 10000 are both free on 127.0.0.1."""
    for _ in range(200):
        port = random.randint(20_000, 50_000)
        if port not in taken and _port_free(port) and _port_free(port + BUS_OFFSET):
            return port
    raise RuntimeError("no free port pair found for a Redis Cluster node")


def binaries_available() -> bool:
    """Whether ``redis-server`` and ``redis-cli`` are on PATH."""
    return shutil.which("redis-server") is not None and shutil.which("redis-cli") is not None


class LocalRedisCluster:
    """Three (or ``masters``) Redis Cluster masters without replicas, started as subprocesses.

    ``tls``: serve TLS only, with these certificates; ``auth_clients``: require client certificates.
    """

    def __init__(
        self, workdir: Path, masters: int = 3, *, tls: TlsFiles | None = None, auth_clients: bool = False
    ) -> None:
        self.workdir = workdir
        self.masters = masters
        self.tls = tls
        self.auth_clients = auth_clients
        self.ports: list[int] = []
        self._procs: list[subprocess.Popen[bytes]] = []

    @property
    def nodes(self) -> str:
        """Startup nodes in Feast's ``host:port,host:port`` form (no options)."""
        return ",".join(f"127.0.0.1:{p}" for p in self.ports)

    @property
    def connection_string(self) -> str:
        """The startup nodes, then (in TLS mode) the options of a verified TLS connection."""
        if self.tls is None:
            return self.nodes
        return f"{self.nodes},{self.tls.options(client_cert=self.auth_clients)}"

    def client(self, port: int, **kwargs: Any) -> redis.Redis:
        """A redis-py client of one node (over verified TLS in TLS mode)."""
        if self.tls is not None:
            kwargs |= self.tls.client_kwargs(client_cert=self.auth_clients)
        return redis.Redis(host="127.0.0.1", port=port, socket_timeout=1, **kwargs)

    def cluster_client(self) -> Any:
        """A redis-py cluster client (over verified TLS in TLS mode)."""
        from redis.cluster import ClusterNode, RedisCluster

        extra = {} if self.tls is None else self.tls.client_kwargs(client_cert=self.auth_clients)
        return RedisCluster(startup_nodes=[ClusterNode("127.0.0.1", p) for p in self.ports], **extra)

    def start(self, timeout: float = 30.0) -> LocalRedisCluster:
        """Start the nodes, create the cluster and wait until it serves every slot."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            for _ in range(self.masters):
                port = free_port_pair(set(self.ports))
                self.ports.append(port)
                self._procs.append(self._spawn(port))
            for port, proc in zip(self.ports, self._procs, strict=True):
                if self.tls is not None:  # TlsUnavailable if this redis-server cannot serve TLS
                    wait_tls(lambda p=port: self.client(p), proc, self.workdir / f"redis-{port}.log", timeout)
                _wait(lambda p=port: self.client(p).ping(), timeout, f"node {port} to start")
            nodes = [f"127.0.0.1:{p}" for p in self.ports]
            tls = [] if self.tls is None else self.tls.cli_arguments(client_cert=self.auth_clients)
            subprocess.run(
                ["redis-cli", *tls, "--cluster", "create", *nodes, "--cluster-replicas", "0", "--cluster-yes"],
                check=True,
                capture_output=True,
                timeout=timeout,
            )
            _wait(self._ok, timeout, "cluster_state:ok on every node")
        except BaseException:
            self.stop()
            raise
        return self

    def _spawn(self, port: int) -> subprocess.Popen[bytes]:
        if self.tls is None:
            listen = ["--port", str(port)]
        else:
            listen = tls_arguments(self.tls, port, auth_clients=self.auth_clients, cluster=True)
        args = [
            "redis-server",
            *listen,
            "--bind", "127.0.0.1",
            "--cluster-enabled", "yes",
            "--cluster-config-file", f"nodes-{port}.conf",
            "--cluster-node-timeout", "5000",
            "--dir", str(self.workdir),
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--logfile", str(self.workdir / f"redis-{port}.log"),
        ]  # fmt: skip
        return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def _ok(self) -> bool:
        for port in self.ports:
            info = self.client(port, decode_responses=True).cluster("info")
            if info.get("cluster_state") != "ok" or str(info.get("cluster_slots_ok")) != "16384":
                return False
        return True

    def stop(self) -> None:
        """Stop every node and remove the working directory."""
        stop_processes(self._procs)
        self._procs.clear()
        shutil.rmtree(self.workdir, ignore_errors=True)


def _wait(check: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if check():  # type: ignore[operator]
                return
        except (redis.RedisError, OSError) as exc:
            last = exc
        time.sleep(0.05)
    raise RuntimeError(f"timed out waiting for {what}: {last}")
