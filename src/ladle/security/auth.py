"""Authentication: the ``auth:`` section of ``feature_store.yaml`` turned into an :class:`Authenticator`.

Every front end (REST ``Authorization`` header, gRPC ``authorization`` metadata, the SDK and the
CLI with their configured credential) hands the raw credential to one authenticator and gets a
:class:`~ladle.security.principal.Principal` back, or :class:`~ladle.errors.AuthenticationError`
with one of Feast's two messages (:data:`MISSING` or :data:`INVALID`); the reason a credential was
refused is logged, never told to the caller.

Types: ``no_auth`` (the default), ``api_key`` (:mod:`.api_keys`), ``oidc`` (:mod:`.oidc`) and
``kubernetes`` (:mod:`.kubernetes`). Anything else is a :class:`~ladle.errors.ConfigError` at
start-up, never ignored.

>>> from ladle.security.api_keys import hash_key
>>> auth = authenticator_for({"type": "api_key", "keys": [{"name": "ci", "sha256": hash_key("k")}]})
>>> auth.authenticate("Bearer k").name
'ci'
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ladle.errors import ConfigError
from ladle.security.base import (
    AUTH_TYPES,
    INVALID,
    MISSING,
    PUBLIC_ENDPOINTS,
    AuthConfig,
    Authenticator,
    NoAuth,
    bearer_token,
    parse_config,
)

__all__ = [
    "AUTH_TYPES",
    "INVALID",
    "MISSING",
    "PUBLIC_ENDPOINTS",
    "AuthConfig",
    "Authenticator",
    "NoAuth",
    "authenticator_for",
    "bearer_token",
    "exposure_warning",
]


def authenticator_for(auth: Mapping[str, Any] | None, base: str | None = None) -> Authenticator:
    """The authenticator of an ``auth:`` section; an unknown type or a bad key is a ConfigError.

    ``base`` is the directory relative paths (``keys_file``, ``ca_cert_path``) are read from.
    """
    auth = auth or {}
    kind = auth.get("type", "no_auth")
    if kind == "no_auth":
        return NoAuth(parse_config(AuthConfig, auth))
    if kind == "api_key":
        from ladle.security.api_keys import ApiKeyAuthenticator

        return ApiKeyAuthenticator.from_section(auth, base)
    if kind == "oidc":
        from ladle.security.oidc import OidcAuthenticator

        return OidcAuthenticator.from_section(auth, base)
    if kind == "kubernetes":
        from ladle.security.kubernetes import KubernetesAuthenticator

        return KubernetesAuthenticator.from_section(auth, base)
    raise ConfigError(f"auth.type: {kind!r} is not one of {', '.join(AUTH_TYPES)}")


_LOOPBACK = ("127.", "::1", "localhost")


def exposure_warning(host: str, authenticator: Authenticator, metrics_port: int = 0) -> str | None:
    """A loud warning when a server is reachable beyond this machine without authentication.

    ``no_auth`` on a non-loopback host is allowed (Kubernetes probes and a private network behind
    a gateway need it) but anyone who can reach the port reads and writes every feature. The
    separate ``metrics_port`` is a plain Prometheus exporter and never checks credentials.
    """
    exposed = not host.startswith(_LOOPBACK)
    if exposed and not authenticator.enabled:
        return (
            f"SECURITY WARNING: serving on {host} with auth: no_auth; anyone who can reach these ports can "
            "read and write every feature. Configure auth (api_key, oidc or kubernetes) or bind 127.0.0.1."
        )
    if exposed and metrics_port:
        return f"metrics_port {metrics_port} on {host} serves /metrics with no auth (auth guards the REST port)"
    return None
