"""Parsing Feast's Redis ``connection_string`` into startup nodes and client options.

Two spellings are accepted::

    localhost:6379                                    one node, default options
    redis-1:6379,redis-2:6379,password=s3cret,ssl=true   startup nodes, then client options
    redis://user:s3cret@redis-1:6379/2                   a URL (rediss:// turns TLS on)

Tokens containing ``=`` are client options; every other token is a ``host[:port]`` node
(``[::1]:6379`` for IPv6). A password containing ``,`` or ``=`` must use the URL form, percent-encoded.
Unknown options and malformed tokens are :class:`~ladle.errors.ConfigError`; messages never repeat
a password.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from ladle.errors import BackendUnavailableError, ConfigError

DEFAULT_PORT = 6379
_WHERE = "invalid configuration: online_store.connection_string"
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def _boolean(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(f"{_WHERE}: option '{name}' must be true or false, got {raw!r}")


def _non_negative_int(name: str, raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{_WHERE}: option '{name}' must be an integer, got {raw!r}") from None
    if value < 0:
        raise ConfigError(f"{_WHERE}: option '{name}' must be >= 0, got {value}")
    return value


def _text(name: str, raw: str) -> str:
    if not raw:
        raise ConfigError(f"{_WHERE}: option '{name}' is empty")
    return raw


def _cert_reqs(name: str, raw: str) -> str:
    value = raw.strip().lower()
    if value not in {"none", "optional", "required"}:
        raise ConfigError(f"{_WHERE}: option '{name}' must be none, optional or required, got {raw!r}")
    return value


#: Client options a connection string may carry, with their parsers (secrets are never echoed).
OPTIONS: Mapping[str, Callable[[str, str], Any]] = {
    "db": _non_negative_int,
    "password": _text,
    "username": _text,
    "client_name": _text,
    "ssl": _boolean,
    "ssl_cert_reqs": _cert_reqs,
    "ssl_ca_certs": _text,
    "ssl_ca_path": _text,
    "ssl_certfile": _text,
    "ssl_keyfile": _text,
    "ssl_check_hostname": _boolean,
    "health_check_interval": _non_negative_int,
    # Accepted for Feast compatibility; redis-py checks slot coverage itself.
    "skip_full_coverage_check": _boolean,
}
_SECRET = {"password"}


@dataclass(frozen=True)
class RedisEndpoint:
    """Startup nodes and client options parsed from a connection string."""

    nodes: tuple[tuple[str, int], ...]
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def address(self) -> str:
        """``host:port[,host:port...]``, for error messages (never includes credentials)."""
        return ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in self.nodes)

    @property
    def db(self) -> int:
        """The logical database (0 unless ``db=`` was given)."""
        return int(self.options.get("db", 0))

    def client_options(self) -> dict[str, Any]:
        """Options to hand to redis-py (``ssl`` and Feast-only keys removed)."""
        return {k: v for k, v in self.options.items() if k not in {"ssl", "skip_full_coverage_check"}}

    @property
    def ssl(self) -> bool:
        """Whether connections use TLS."""
        return bool(self.options.get("ssl", False))


def parse_node(token: str) -> tuple[str, int]:
    """``host[:port]`` or ``[v6]:port`` → ``(host, port)``."""
    token = token.strip()
    if token.startswith("["):
        host, sep, rest = token[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
        if not sep or (rest and not rest.startswith(":")):
            raise ConfigError(f"{_WHERE}: {token!r} is not a valid [ipv6]:port address")
    else:
        host, _, port_text = token.partition(":")
        if ":" in port_text:
            raise ConfigError(f"{_WHERE}: {token!r} has several ':'; write IPv6 addresses as [addr]:port")
    if not host or any(c.isspace() for c in host):
        raise ConfigError(f"{_WHERE}: {token!r} has no valid host name")
    if not port_text:
        return host, DEFAULT_PORT
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConfigError(f"{_WHERE}: port {port_text!r} of {token!r} is not a number from 1 to 65535")
    return host, int(port_text)


def _option(options: dict[str, Any], name: str, raw: str) -> None:
    name = name.strip()
    parser = OPTIONS.get(name)
    if parser is None:
        known = ", ".join(sorted(OPTIONS))
        raise ConfigError(f"{_WHERE}: unknown option '{name}'; known options: {known}")
    if name in options:
        raise ConfigError(f"{_WHERE}: option '{name}' is given twice")
    options[name] = parser(name, raw if name in _SECRET else raw.strip())


def _parse_url(url: str, options: dict[str, Any]) -> tuple[str, int]:
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(f"{_WHERE}: the URL's port is not a number from 1 to 65535") from None
    if not parts.hostname:
        raise ConfigError(f"{_WHERE}: the URL has no host (redis://host:port[/db])")
    if parts.username:
        _option(options, "username", unquote(parts.username))
    if parts.password:
        _option(options, "password", unquote(parts.password))
    path = parts.path.strip("/")
    if path:
        _option(options, "db", path)
    if parts.scheme == "rediss":
        _option(options, "ssl", "true")
    for name, values in parse_qs(parts.query, keep_blank_values=True).items():
        _option(options, name, values[-1])
    return parts.hostname, port or DEFAULT_PORT


def parse_connection_string(text: str) -> RedisEndpoint:
    """Parse a Feast-style connection string or a ``redis://`` / ``rediss://`` URL.

    >>> parse_connection_string("r1:6379,r2:6380,password=x,ssl=true").nodes
    (('r1', 6379), ('r2', 6380))
    """
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"{_WHERE}: empty; write host:port, e.g. localhost:6379")
    options: dict[str, Any] = {}
    nodes: list[tuple[str, int]] = []
    tokens = [t.strip() for t in text.split(",")]
    if tokens[0].startswith(("redis://", "rediss://")):
        if len(tokens) > 1:
            raise ConfigError(f"{_WHERE}: a redis:// URL names one node; use host:port,host:port,... for several")
        nodes.append(_parse_url(tokens[0], options))
        return RedisEndpoint(tuple(nodes), _consistent(options))
    if "://" in tokens[0]:
        scheme = tokens[0].split("://", 1)[0]
        raise ConfigError(f"{_WHERE}: scheme '{scheme}://' is not supported; use redis://, rediss:// or host:port")
    for token in tokens:
        if not token:
            raise ConfigError(f"{_WHERE}: empty item between commas")
        if "=" in token:
            name, _, raw = token.partition("=")
            _option(options, name, raw)
        elif options:
            raise ConfigError(f"{_WHERE}: node {token!r} comes after options; list host:port nodes first")
        else:
            nodes.append(parse_node(token))
    if not nodes:
        raise ConfigError(f"{_WHERE}: no host:port given")
    if len(set(nodes)) != len(nodes):
        raise ConfigError(f"{_WHERE}: a node is listed twice")
    return RedisEndpoint(tuple(nodes), _consistent(options))


def _consistent(options: dict[str, Any]) -> dict[str, Any]:
    """``options``, once the ones that only make sense together are checked.

    A client key without its certificate: redis-py (every single-server connection, and a cluster's
    commands) fails on it with a bare ``TypeError`` when it first connects, so it is refused here. A
    PEM file holding both is named twice.
    """
    if "ssl_keyfile" in options and "ssl_certfile" not in options:
        raise ConfigError(
            f"{_WHERE}: option 'ssl_keyfile' needs 'ssl_certfile' (the client certificate; if one file holds"
            " both, name it in both options)"
        )
    return options


#: TLS options naming files (or, for ``ssl_ca_path``, a directory) the client must read.
_TLS_FILES = {"ssl_ca_certs": os.path.isfile, "ssl_certfile": os.path.isfile, "ssl_keyfile": os.path.isfile}
_TLS_DIRS = {"ssl_ca_path": os.path.isdir}


def check_tls_files(endpoint: RedisEndpoint) -> None:
    """:class:`~ladle.errors.ConfigError` naming the option when a TLS file or directory it names is
    not there (checked when a store opens, not when a configuration is read: the files may live only
    where the store runs). Without this, the client's own error is "Error 2 connecting to host:port.
    No such file or directory." with no word of which file."""
    for name, exists in {**_TLS_FILES, **_TLS_DIRS}.items():
        path = endpoint.options.get(name)
        if path is not None and not exists(path):
            kind = "directory" if name in _TLS_DIRS else "file"
            raise ConfigError(f"{_WHERE}: option '{name}': no such {kind}: {path}")


def unavailable(server: str, error: BaseException) -> BackendUnavailableError:
    """The error for ``server`` (e.g. "Redis at host:port") failing with ``error``; when the cause is
    a certificate the client did not trust, it names the options to check."""
    text = str(error)
    hint = ""
    if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verification failed" in text:
        hint = (
            " (the server's TLS certificate was not accepted: check ssl_ca_certs / ssl_ca_path, the server's"
            " host name against ssl_check_hostname, or ssl_cert_reqs)"
        )
    return BackendUnavailableError(f"{server} is unavailable: {error}{hint}")
