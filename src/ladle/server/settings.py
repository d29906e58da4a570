"""Feature server settings, each declared once: name, type, default and help.

``ladle serve`` derives one CLI flag and one environment variable from every setting, and
``docs/server.md`` carries the table :func:`markdown_table` renders (a test keeps it current).
Precedence: CLI flag > ``LADLE_SERVE_<NAME>`` environment variable > ``feature_store.yaml``
(``feature_server:`` and ``registry:`` blocks, for the settings whose default is "from config")
> the default below.

>>> settings = ServerSettings(port=8081, workers=2).with_config(store.config)
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ladle.config import RepoConfig
from ladle.errors import ConfigError

ENV_PREFIX = "LADLE_SERVE_"


GRPC_ENGINES = ("ladle", "grpcio")
TLS_CLIENT_AUTH = ("required", "optional")
GRPC_LIMITS = (
    "grpc_max_streams_per_connection", "grpc_max_connections", "grpc_connection_buffer_bytes",
    "grpc_worker_buffer_bytes", "grpc_max_control_frames_per_second", "grpc_max_resets_per_second",
    "grpc_max_continuation_frames", "grpc_handshake_timeout", "grpc_idle_timeout", "grpc_stall_timeout",
)  # fmt: skip


def _setting(default: Any, help: str, *, short: str | None = None) -> Any:
    return field(default=default, metadata={"help": help, "short": short})


@dataclass(frozen=True)
class ServerSettings:
    """How ``ladle serve`` runs; ``None`` means "take it from feature_store.yaml"."""

    host: str = _setting("127.0.0.1", "Interface to listen on (0.0.0.0 listens on every interface).")
    port: int = _setting(8080, "REST port (0 picks a free port).", short="-p")
    rest: bool = _setting(True, "Serve the REST API (--no-rest turns it off).")
    grpc_port: int = _setting(6566, "gRPC port (0 picks a free port).", short="-g")
    grpc: bool = _setting(True, "Serve gRPC (--no-grpc turns it off).")
    workers: int = _setting(1, "Worker processes sharing the ports.", short="-w")
    registry_ttl_sec: float | None = _setting(
        None, "Seconds between background registry refreshes (default: registry.cache_ttl_seconds).", short="-r"
    )
    max_entities_per_request: int | None = _setting(
        None, "Entity rows allowed in one request (default: feature_server.max_entities_per_request)."
    )
    max_body_bytes: int | None = _setting(
        None, "Largest request body accepted, in bytes (default: feature_server.max_body_bytes)."
    )
    offload_entities: int = _setting(
        256, "Reads of more entity rows than this run in a thread so small reads are not queued behind them."
    )
    graceful_timeout: float = _setting(30.0, "Seconds in-flight requests get to finish after SIGTERM.")
    keep_alive_timeout: int = _setting(30, "Seconds an idle HTTP keep-alive connection stays open.")
    access_log: bool = _setting(False, "Log every HTTP request (costs throughput).")
    metrics: bool = _setting(True, "Serve Prometheus metrics on GET /metrics of the REST port.")
    metrics_port: int = _setting(0, "Also serve Prometheus metrics on this port (like Feast's :8000); 0 = off.")
    grpc_reflection: bool = _setting(True, "Enable gRPC server reflection.")
    grpc_engine: str = _setting(
        "ladle", "gRPC server: 'ladle' (built-in HTTP/2, the fast default) or 'grpcio' (grpc.aio)."
    )
    # -- REST limits and TLS (docs/security.md) ---------------------------------------------------
    rest_max_header_bytes: int = _setting(
        32768, "REST: largest request head (target + header names and values), in bytes; more gets 431."
    )
    rest_max_headers: int = _setting(100, "REST: most header lines in one request; more gets 431.")
    rest_request_timeout: float = _setting(
        15.0, "REST: seconds a request's head and body get to arrive (a new connection: its first request); else 408."
    )
    rest_max_pipelined: int = _setting(
        16, "REST: pipelined requests queued on one connection; one read carrying more closes it after those."
    )
    rest_max_connections: int = _setting(
        1000, "REST: open connections per worker (at most a quarter of its file-descriptor limit)."
    )
    rest_write_timeout: float = _setting(
        30.0, "REST: seconds a response may wait for a client that reads nothing before the connection is closed."
    )
    tls_cert: str | None = _setting(
        None, "PEM certificate chain for TLS on both ports (default: feature_server.tls.cert; unset = plain)."
    )
    tls_key: str | None = _setting(None, "PEM private key of --tls-cert (default: feature_server.tls.key).")
    tls_client_ca: str | None = _setting(
        None, "PEM CA bundle that client certificates must chain to (default: feature_server.tls.client_ca)."
    )
    tls_client_auth: str | None = _setting(
        None, "With --tls-client-ca: 'required' (default) or 'optional' client certificates (default: config)."
    )
    # -- gRPC (HTTP/2) limits (docs/security.md) --------------------------------------------------
    grpc_max_streams_per_connection: int = _setting(
        100, "gRPC calls in flight on one connection (SETTINGS_MAX_CONCURRENT_STREAMS, also for grpcio)."
    )
    grpc_max_connections: int = _setting(
        1000, "gRPC connections per worker (at most half its file-descriptor limit); more are closed at once."
    )
    grpc_connection_buffer_bytes: int = _setting(
        32 << 20, "Request and response bytes one gRPC connection may hold (at least max_body_bytes + 64 KiB)."
    )
    grpc_worker_buffer_bytes: int = _setting(
        64 << 20, "Request and response bytes all gRPC connections of a worker may hold together."
    )
    grpc_max_control_frames_per_second: int = _setting(
        1000, "HTTP/2 control frames (PING, SETTINGS, PRIORITY, empty or no-op) per connection and second."
    )
    grpc_max_resets_per_second: int = _setting(
        200,
        "HTTP/2 stream resets (the client's, and streams refused or reset for its faults) per connection and second.",
    )
    grpc_max_continuation_frames: int = _setting(32, "CONTINUATION frames allowed in one HTTP/2 header block.")
    grpc_handshake_timeout: float = _setting(
        10.0, "Seconds a new gRPC connection has for its preface and SETTINGS (also grpcio's handshake)."
    )
    grpc_idle_timeout: float = _setting(300.0, "Seconds a gRPC connection may stay open without a call (also grpcio).")
    grpc_stall_timeout: float = _setting(
        30.0, "Seconds a gRPC request may take to arrive, or a response wait for the client's window, before a reset."
    )

    def __post_init__(self) -> None:
        for name in ("port", "grpc_port", "metrics_port"):
            value = getattr(self, name)
            if not 0 <= value <= 65535:
                raise ConfigError(f"server setting {name}: {value} is not a port number (0-65535)")
        if self.workers < 1:
            raise ConfigError(f"server setting workers: {self.workers} must be at least 1")
        if not (self.rest or self.grpc):
            raise ConfigError("server settings: both REST and gRPC are turned off; nothing to serve")
        for name in ("max_entities_per_request", "max_body_bytes", "registry_ttl_sec"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigError(f"server setting {name}: {value} must be positive")
        if self.grpc_engine not in GRPC_ENGINES:
            raise ConfigError(
                f"server setting grpc_engine: {self.grpc_engine!r} is not one of {', '.join(GRPC_ENGINES)}"
            )
        if self.graceful_timeout < 0 or self.offload_entities < 0 or self.keep_alive_timeout < 1:
            raise ConfigError("server settings: timeouts and offload_entities must not be negative")
        self._check_limits_and_tls()
        for name in GRPC_LIMITS:
            if getattr(self, name) <= 0:
                raise ConfigError(f"server setting {name}: {getattr(self, name)} must be positive")

    def _check_limits_and_tls(self) -> None:
        limits = ("rest_max_header_bytes", "rest_max_headers", "rest_request_timeout", "rest_max_pipelined")
        for name in (*limits, "rest_max_connections", "rest_write_timeout"):
            value = getattr(self, name)
            if value <= 0:
                raise ConfigError(f"server setting {name}: {value} must be positive")
        if self.tls_client_auth is not None and self.tls_client_auth not in TLS_CLIENT_AUTH:
            raise ConfigError(
                f"server setting tls_client_auth: {self.tls_client_auth!r} is not one of {', '.join(TLS_CLIENT_AUTH)}"
            )

    def with_config(self, config: RepoConfig) -> ServerSettings:
        """These settings with every "from config" value filled in from ``config``."""
        fs = config.feature_server
        filled = dataclasses.replace(
            self,
            registry_ttl_sec=self.registry_ttl_sec or config.registry.cache_ttl_seconds or None,
            max_entities_per_request=self.max_entities_per_request or fs.max_entities_per_request,
            max_body_bytes=self.max_body_bytes or fs.max_body_bytes,
        )
        return filled._tls_from(config)

    def _tls_from(self, config: RepoConfig) -> ServerSettings:
        """These settings, each TLS one from ``feature_server.tls`` when unset (paths relative to the repo)."""
        tls = config.feature_server.tls
        if tls is None:
            return self

        def path(value: str | None) -> str | None:
            return None if value is None else str(config.repo_path / Path(value).expanduser())

        return dataclasses.replace(
            self,
            tls_cert=self.tls_cert or path(tls.cert),
            tls_key=self.tls_key or path(tls.key),
            tls_client_ca=self.tls_client_ca or path(tls.client_ca),
            tls_client_auth=self.tls_client_auth or tls.client_auth,
        )

    @property
    def tls(self) -> bool:
        """Whether both ports speak TLS (a certificate is configured)."""
        return self.tls_cert is not None

    @property
    def entity_limit(self) -> int:
        """``max_entities_per_request`` after :meth:`with_config` (a safe default before)."""
        return self.max_entities_per_request or 10_000

    @property
    def body_limit(self) -> int:
        """``max_body_bytes`` after :meth:`with_config` (a safe default before)."""
        return self.max_body_bytes or 10 * 1024 * 1024


@dataclass(frozen=True)
class SettingInfo:
    """One setting as the CLI and the docs see it."""

    name: str
    type: type
    optional: bool
    default: Any
    help: str
    short: str | None

    @property
    def flag(self) -> str:
        """The long CLI flag, e.g. ``--grpc-port``."""
        return "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        """The environment variable, e.g. ``LADLE_SERVE_GRPC_PORT``."""
        return ENV_PREFIX + self.name.upper()


def setting_infos() -> list[SettingInfo]:
    """Every setting, in declaration order."""
    hints = typing.get_type_hints(ServerSettings)
    out = []
    for f in dataclasses.fields(ServerSettings):
        hint = hints[f.name]
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        optional = isinstance(hint, types.UnionType) and type(None) in typing.get_args(hint)
        kind = args[0] if optional else hint
        out.append(SettingInfo(f.name, kind, optional, f.default, f.metadata["help"], f.metadata["short"]))
    return out


def markdown_table() -> str:
    """The settings table of ``docs/server.md``."""
    rows = [
        "| flag | environment variable | type | default | meaning |",
        "|---|---|---|---|---|",
    ]
    for s in setting_infos():
        flag = f"`{s.flag}`" + (f", `{s.short}`" if s.short else "")
        if s.type is bool:
            flag = f"`{s.flag}` / `--no-{s.flag[2:]}`"
        default = "from config" if s.default is None else f"`{s.default}`"
        rows.append(f"| {flag} | `{s.env}` | {s.type.__name__} | {default} | {s.help} |")
    return "\n".join(rows) + "\n"
