"""``auth: {type: api_key}``: static keys, stored only as SHA-256 hashes.

A key is 32 random bytes (``ladle auth new-key`` makes one); the config holds its SHA-256 hex
digest with the name, roles, groups and namespaces of the caller it stands for, inline under
``keys:`` and/or in a YAML/JSON secrets file named by ``keys_file``::

    auth:
      type: api_key
      keys:
        - {name: trainer, sha256: 9f86d0…, roles: [reader]}
      keys_file: /run/secrets/ladle-keys.yaml     # same list, under "keys:" or at the top level

A request is checked with one SHA-256 and one dict lookup of the digest. A plain (fast) hash is
enough because keys are random 256-bit values, not passwords: there is nothing to brute-force.
The lookup's timing can only tell an attacker about the hash of the guess they sent, never about
a stored key; the found digest is still compared with :func:`hmac.compare_digest`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ladle.errors import AuthenticationError, ConfigError
from ladle.security.base import INVALID, AuthConfig, bearer_token, parse_config
from ladle.security.principal import Principal

log = logging.getLogger(__name__)
KEY_PREFIX = "ladle_"
_HEX64 = re.compile(r"[0-9a-f]{64}")


def hash_key(key: str) -> str:
    """The SHA-256 hex digest of ``key`` (what the config stores)."""
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    """A fresh random key: ``ladle_`` and 43 URL-safe characters (256 bits)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


class ApiKeyEntry(BaseModel):
    """One key: its digest and the caller it stands for."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    sha256: str
    roles: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    namespaces: tuple[str, ...] = ()

    @field_validator("sha256")
    @classmethod
    def _digest(cls, value: str) -> str:
        value = value.strip().lower()
        if not _HEX64.fullmatch(value):
            raise ValueError("must be the 64-character SHA-256 hex digest of the key (see `ladle auth hash-key`)")
        return value

    def principal(self) -> Principal:
        """The caller this key authenticates as."""
        return Principal(
            self.name, frozenset(self.roles), frozenset(self.groups), frozenset(self.namespaces), "api_key"
        )


class ApiKeyConfig(AuthConfig):
    """The ``api_key`` section."""

    keys: tuple[ApiKeyEntry, ...] = ()
    keys_file: str | None = None
    #: Also accept the key in an ``x-api-key`` header (REST) / metadata (gRPC).
    x_api_key: bool = True


def _read_keys_file(path: Path) -> list[ApiKeyEntry]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"auth.keys_file: cannot read {path}: {exc.strerror or exc}") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise ConfigError(f"auth.keys_file: {path} is not valid YAML/JSON: {exc}") from None
    if isinstance(data, Mapping):
        data = data.get("keys")
    if not isinstance(data, list):
        raise ConfigError(f"auth.keys_file: {path} must hold a list of keys (at the top or under 'keys:')")
    entries: list[ApiKeyEntry] = parse_config(ApiKeyConfig, {"type": "api_key", "keys": data}).keys
    return entries


class ApiKeyAuthenticator:
    """Checks bearer keys against the configured digests."""

    enabled = True

    def __init__(self, config: ApiKeyConfig, entries: list[ApiKeyEntry]) -> None:
        self.config = config
        self._by_digest: dict[str, tuple[str, Principal]] = {}
        names: set[str] = set()
        for entry in entries:
            if entry.sha256 in self._by_digest:
                other = self._by_digest[entry.sha256][1].name
                raise ConfigError(f"auth.keys: keys '{other}' and '{entry.name}' are the same key")
            if entry.name in names:
                raise ConfigError(f"auth.keys: two keys are named '{entry.name}'; give each caller its own name")
            names.add(entry.name)
            self._by_digest[entry.sha256] = (entry.sha256, entry.principal())
        if not self._by_digest:
            raise ConfigError("auth: type api_key needs at least one key under 'keys' or in 'keys_file'")

    @classmethod
    def from_section(cls, auth: Mapping[str, Any], base: str | None = None) -> ApiKeyAuthenticator:
        """Validate the section and load ``keys_file`` (relative to ``base``)."""
        config: ApiKeyConfig = parse_config(ApiKeyConfig, auth)
        entries = list(config.keys)
        if config.keys_file:
            path = Path(config.keys_file).expanduser()
            if not path.is_absolute() and base is not None:
                path = Path(base) / path
            entries += _read_keys_file(path)
        return cls(config, entries)

    def __len__(self) -> int:
        return len(self._by_digest)

    def verify(self, token: str) -> Principal:
        """The principal of a key, or AuthenticationError(INVALID)."""
        digest = hash_key(token)
        found = self._by_digest.get(digest)
        if found is None or not hmac.compare_digest(found[0], digest):
            log.info("authentication refused: unknown API key")
            raise AuthenticationError(INVALID)
        return found[1]

    def authenticate(self, authorization: str | None) -> Principal:
        """The principal of an ``Authorization: Bearer <key>`` value."""
        return self.verify(bearer_token(authorization))

    def quick(self, authorization: str | None) -> Principal | None:
        """Same as :meth:`authenticate`: a hash and a dict lookup never block."""
        return self.verify(bearer_token(authorization))
