"""What every authenticator shares: Feast's two 401 messages, the common ``auth:`` keys, the protocol.

The types live in :mod:`.api_keys`, :mod:`.oidc` and :mod:`.kubernetes`; :func:`ladle.security.auth.authenticator_for`
picks one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, ValidationError

from ladle.errors import AuthenticationError, ConfigError
from ladle.security.principal import ANONYMOUS, Principal

MISSING = "Missing authentication token"
"""Feast's 401 detail when no credential came with the request."""
INVALID = "Invalid or expired access token"
"""Feast's 401 detail for a credential that did not verify (the reason is logged server-side)."""

AUTH_TYPES = ("no_auth", "api_key", "oidc", "kubernetes")

#: What ``auth.public`` may open to anonymous callers when auth is on (``/health`` is always open).
PUBLIC_ENDPOINTS = ("metrics", "docs", "ready", "reflection")


class AuthConfig(BaseModel):
    """Keys every ``auth:`` type shares; each type's model adds its own. Unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str = "no_auth"
    #: Endpoints open to anonymous callers while auth is on: metrics, docs, ready (details), reflection.
    public: tuple[str, ...] = ()
    # Client side (SDK, CLI, RemoteClient): where this process gets its own token.
    token: str | None = None
    token_env_var: str | None = None

    def model_post_init(self, context: Any) -> None:
        """Check ``public`` names."""
        unknown = sorted(set(self.public) - set(PUBLIC_ENDPOINTS))
        if unknown:
            raise ValueError(f"public: unknown endpoints {unknown}; choose from {list(PUBLIC_ENDPOINTS)}")


class Authenticator(Protocol):
    """Turns a credential into a principal."""

    @property
    def enabled(self) -> bool:
        """False for ``no_auth``: callers need not send anything and nothing is enforced."""
        ...

    @property
    def config(self) -> AuthConfig:
        """The validated ``auth:`` section."""
        ...

    def authenticate(self, authorization: str | None) -> Principal:
        """The principal for an ``Authorization`` value (``"Bearer <token>"``), or AuthenticationError."""
        ...

    def verify(self, token: str) -> Principal:
        """The principal for a bare token (what the SDK holds), or AuthenticationError."""
        ...

    def quick(self, authorization: str | None) -> Principal | None:
        """The principal if it is known without I/O or a signature check, else None.

        Servers call this on the event loop and, on None, :meth:`authenticate` in a thread: a first
        token may need the identity provider's keys (a network fetch) and a signature check. A
        missing or malformed credential raises here already.
        """
        ...


class NoAuth:
    """``auth: {type: no_auth}``: everyone is :data:`ANONYMOUS` (the embedded default)."""

    enabled = False

    def __init__(self, config: AuthConfig | None = None) -> None:
        self.config = config or AuthConfig()

    def authenticate(self, authorization: str | None) -> Principal:
        """Always :data:`ANONYMOUS`; a credential, if sent, is ignored."""
        return ANONYMOUS

    def verify(self, token: str) -> Principal:
        """Always :data:`ANONYMOUS`."""
        return ANONYMOUS

    def quick(self, authorization: str | None) -> Principal | None:
        """Always :data:`ANONYMOUS`."""
        return ANONYMOUS


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` value; AuthenticationError(MISSING) otherwise.

    The scheme is case-insensitive (RFC 9110); a value that is not a bearer credential counts as
    missing, as Feast's server treats it.
    """
    if not authorization:
        raise AuthenticationError(MISSING)
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise AuthenticationError(MISSING)
    return token


def parse_config(model: type[BaseModel], auth: Mapping[str, Any]) -> Any:
    """Validate an ``auth:`` section with ``model``; errors become one readable ConfigError."""
    try:
        return model.model_validate(dict(auth))
    except ValidationError as exc:
        problems = "; ".join(
            f"auth.{'.'.join(str(p) for p in e['loc']) or 'section'}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        )
        raise ConfigError(problems) from None
