"""Authentication: the ``auth:`` section of ``feature_store.yaml`` turned into an :class:`Authenticator`.

Every front end (REST ``Authorization`` header, gRPC ``authorization`` metadata, the SDK and the
CLI with their configured credential) hands the raw credential to one authenticator and gets a
:class:`~ladle.security.principal.Principal` back, or :class:`~ladle.errors.AuthenticationError`.
An ``auth:`` type that is not implemented is a :class:`~ladle.errors.ConfigError` at start-up.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from ladle.errors import ConfigError
from ladle.security.principal import ANONYMOUS, Principal


class Authenticator(Protocol):
    """Turns a credential into a principal."""

    @property
    def enabled(self) -> bool:
        """False for ``no_auth``: callers need not send anything and nothing is enforced."""
        ...

    def authenticate(self, authorization: str | None) -> Principal:
        """The principal for an ``Authorization`` value (``"Bearer <token>"``), or AuthenticationError."""
        ...


class NoAuth:
    """``auth: {type: no_auth}``: everyone is :data:`ANONYMOUS` (the embedded default, loopback only)."""

    enabled = False

    def authenticate(self, authorization: str | None) -> Principal:
        """Always :data:`ANONYMOUS`; a credential, if sent, is ignored."""
        return ANONYMOUS


def authenticator_for(auth: Mapping[str, Any]) -> Authenticator:
    """The authenticator of an ``auth:`` section; an unknown or unimplemented type is a ConfigError."""
    kind = auth.get("type", "no_auth")
    if kind == "no_auth":
        return NoAuth()
    raise ConfigError(f"auth.type: {kind!r} is not implemented (use no_auth)")
