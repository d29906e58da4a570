"""Real TLS Redis servers for tests: a throwaway CA, its certificates, and redis-server on TLS only.

>>> files = TlsFiles.make(Path("/tmp/pki"))
>>> server = TlsRedisServer(Path("/tmp/r"), files).start()
>>> server.connection_string
'127.0.0.1:31001,ssl=true,ssl_ca_certs=/tmp/pki/ca.pem'
>>> server.stop()

The certificates come from trustme (a test dependency): one CA signs the servers' certificate
(127.0.0.1 and localhost), a client certificate, and a certificate naming another host; a second CA
signs nothing the servers use. A server listens on TLS only (``--port 0 --tls-port P``);
:func:`tls_arguments` is shared with the TLS mode of :class:`.redis_cluster.LocalRedisCluster`.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from backends.processes import stop_processes


class TlsUnavailable(RuntimeError):
    """redis-server started but never answered over TLS (built without TLS, most likely)."""


@dataclass(frozen=True)
class TlsFiles:
    """PEM files of one test PKI (all certificates below are signed by ``ca`` unless said otherwise)."""

    ca: Path
    cert: Path  #: the servers' certificate: 127.0.0.1 and localhost
    key: Path
    client_cert: Path  #: a client certificate (for ``tls-auth-clients yes``)
    client_key: Path
    misnamed_cert: Path  #: names only redis.invalid: a host name check against 127.0.0.1 fails
    misnamed_key: Path
    other_ca: Path  #: a CA that signed none of these

    @classmethod
    def make(cls, directory: Path) -> TlsFiles:
        """Issue a fresh CA and its certificates into ``directory``."""
        import trustme

        directory.mkdir(parents=True, exist_ok=True)
        ca, other = trustme.CA(), trustme.CA()
        paths: dict[str, Path] = {}
        for name, leaf in (
            ("server", ca.issue_cert("127.0.0.1", "localhost")),
            ("client", ca.issue_cert("client@ladle.test")),
            ("misnamed", ca.issue_cert("redis.invalid")),
        ):
            paths[f"{name}_cert"] = directory / f"{name}.pem"
            paths[f"{name}_key"] = directory / f"{name}-key.pem"
            leaf.cert_chain_pems[0].write_to_path(str(paths[f"{name}_cert"]))
            leaf.private_key_pem.write_to_path(str(paths[f"{name}_key"]))
        ca.cert_pem.write_to_path(str(directory / "ca.pem"))
        other.cert_pem.write_to_path(str(directory / "other-ca.pem"))
        return cls(
            ca=directory / "ca.pem",
            cert=paths["server_cert"],
            key=paths["server_key"],
            client_cert=paths["client_cert"],
            client_key=paths["client_key"],
            misnamed_cert=paths["misnamed_cert"],
            misnamed_key=paths["misnamed_key"],
            other_ca=directory / "other-ca.pem",
        )

    def options(self, *, client_cert: bool = False) -> str:
        """Connection-string options trusting this CA (and presenting the client certificate)."""
        text = f"ssl=true,ssl_ca_certs={self.ca}"
        if client_cert:
            text += f",ssl_certfile={self.client_cert},ssl_keyfile={self.client_key}"
        return text

    def client_kwargs(self, *, client_cert: bool = False) -> dict[str, Any]:
        """redis-py keyword arguments for a verified TLS connection."""
        kwargs: dict[str, Any] = {"ssl": True, "ssl_ca_certs": str(self.ca)}
        if client_cert:
            kwargs |= {"ssl_certfile": str(self.client_cert), "ssl_keyfile": str(self.client_key)}
        return kwargs

    def cli_arguments(self, *, client_cert: bool = False) -> list[str]:
        """redis-cli's TLS flags."""
        args = ["--tls", "--cacert", str(self.ca)]
        if client_cert:
            args += ["--cert", str(self.client_cert), "--key", str(self.client_key)]
        return args


def tls_arguments(
    files: TlsFiles, port: int, *, auth_clients: bool, cluster: bool, cert: Path | None = None, key: Path | None = None
) -> list[str]:
    """redis-server flags serving TLS only on ``port`` (the cluster bus too, for a cluster node)."""
    args = [
        "--port", "0",
        "--tls-port", str(port),
        "--tls-cert-file", str(cert or files.cert),
        "--tls-key-file", str(key or files.key),
        "--tls-ca-cert-file", str(files.ca),
        "--tls-auth-clients", "yes" if auth_clients else "no",
    ]  # fmt: skip
    if cluster:
        args += ["--tls-cluster", "yes", "--tls-replication", "yes"]
    return args


def tls_binaries_available() -> bool:
    """Whether ``redis-server`` and ``redis-cli`` are on PATH (TLS support is found out on start)."""
    return shutil.which("redis-server") is not None and shutil.which("redis-cli") is not None


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class TlsRedisServer:
    """One redis-server on a free loopback port, TLS only, as a subprocess (no persistence).

    ``cert`` / ``key`` replace the servers' certificate (e.g. :attr:`TlsFiles.misnamed_cert`);
    ``auth_clients`` makes the server require a client certificate.
    """

    def __init__(
        self,
        workdir: Path,
        files: TlsFiles,
        *,
        auth_clients: bool = False,
        cert: Path | None = None,
        key: Path | None = None,
    ) -> None:
        self.workdir = workdir
        self.files = files
        self.auth_clients = auth_clients
        self._cert, self._key = cert, key
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        """``127.0.0.1:port``."""
        return f"127.0.0.1:{self.port}"

    @property
    def connection_string(self) -> str:
        """The address with the options of a verified TLS connection (and the client certificate if required)."""
        return f"{self.address},{self.files.options(client_cert=self.auth_clients)}"

    def client(self) -> redis.Redis:
        """A redis-py client (verified TLS; the client certificate when the server asks for one)."""
        kwargs = self.files.client_kwargs(client_cert=self.auth_clients)
        if self._cert is not None:  # another certificate than the one naming 127.0.0.1: skip the host name check
            kwargs["ssl_check_hostname"] = False
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2, **kwargs)

    def start(self, timeout: float = 20.0) -> TlsRedisServer:
        """Start the server; return once it answers PING over TLS (:class:`TlsUnavailable` if it never does)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        log = self.workdir / f"redis-{self.port}.log"
        args = [
            "redis-server",
            *tls_arguments(self.files, self.port, auth_clients=self.auth_clients, cluster=False,
                           cert=self._cert, key=self._key),
            "--bind", "127.0.0.1",
            "--dir", str(self.workdir),
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--logfile", str(log),
        ]  # fmt: skip
        self._proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_tls(self.client, self._proc, log, timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the server and remove its working directory."""
        if self._proc is not None:
            stop_processes([self._proc])
            self._proc = None
        shutil.rmtree(self.workdir, ignore_errors=True)


def wait_tls(client: Any, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    """Wait until ``client()`` answers PING; :class:`TlsUnavailable` (with the log's tail) if it never does.

    A redis-server built without TLS may accept the TCP connection and never finish a handshake,
    or exit at start: either way it is reported here, with what the server logged.
    """
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            conn = client()
            try:
                if conn.ping():
                    return
            finally:
                conn.close()
        except (redis.RedisError, OSError) as exc:
            last = exc
        time.sleep(0.05)
    tail = log.read_text(errors="replace").splitlines()[-5:] if log.exists() else []
    state = f"exited with {proc.returncode}" if proc.poll() is not None else "running"
    raise TlsUnavailable(f"redis-server ({state}) never answered PING over TLS: {last}; its log ends: {tail}")


class TlsSends:
    """Records which master each of the cluster's raw TLS pipelines went to, and every general-path
    read (``ClusterNodes.mget``, with its key count); the real servers still answer."""

    def __init__(self, monkeypatch: Any) -> None:
        from ladle.online.redis import cluster_read
        from ladle.online.redis.cluster import ClusterNodes

        self.masters: list[str] = []
        self.general: list[int] = []
        send, mget = cluster_read._TlsLink.send, ClusterNodes.mget

        def spy_send(link: Any, payload: bytes) -> None:
            self.masters.append(link.name)
            send(link, payload)

        def spy_mget(nodes: Any, keys: Any, slots: Any = None) -> Any:
            self.general.append(len(keys))
            return mget(nodes, keys, slots)

        monkeypatch.setattr(cluster_read._TlsLink, "send", spy_send)
        monkeypatch.setattr(ClusterNodes, "mget", spy_mget)
