"""``auth: {type: oidc}``: bearer JWTs verified against the issuer's published keys (PyJWT).

Feast's keys work as they are (``auth_discovery_url``, ``client_id``, ``audience``, ``issuer``,
``verify_ssl``, ``ca_cert_path``, ``jwks_cache_lifespan_seconds``, ``jwks_request_timeout_seconds``
and the client keys), plus ``jwks_url`` (with ``issuer``, instead of discovery), ``algorithms``,
``leeway_seconds``, ``verify_audience`` and ``token_cache_size``.

What a token must pass: a signature by a key of the issuer's JWK set (:mod:`.jwks`; unknown
``kid`` → one rate-limited refetch), an algorithm from the pinned asymmetric list (never
``none``, never HMAC: a public key is not a shared secret), ``iss`` equal to the issuer, ``exp``
present and not past, ``nbf`` / ``iat`` not in the future (both with ``leeway_seconds``), and
``aud`` containing the audience (``audience``, else ``client_id``; Keycloak's ``azp`` counts).
A verified token is cached until its ``exp``, so a client reusing its token costs a dict lookup.

Roles come from ``resource_access.<client_id>.roles`` and the top-level ``roles`` claim, groups
from ``groups``, the name from the first of preferred_username, upn, azp, appid, sub (Feast's rules).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import Field, field_validator

from ladle.errors import AuthenticationError, BackendUnavailableError, ConfigError
from ladle.security.base import INVALID, AuthConfig, bearer_token, parse_config
from ladle.security.jwks import KeySet, discover, ssl_context
from ladle.security.principal import Principal

log = logging.getLogger(__name__)

ASYMMETRIC = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
_NAME_CLAIMS = ("preferred_username", "upn", "azp", "appid", "sub")


class JwtConfig(AuthConfig):
    """What every JWT-verifying type (oidc, kubernetes) shares."""

    auth_discovery_url: str | None = None
    issuer: str | None = None
    jwks_url: str | None = None
    audience: str | tuple[str, ...] | None = None
    verify_audience: bool = True
    algorithms: tuple[str, ...] = ASYMMETRIC
    leeway_seconds: float = Field(default=30.0, ge=0)
    verify_ssl: bool = True
    ca_cert_path: str = ""
    jwks_cache_lifespan_seconds: float = Field(default=300.0, gt=0)
    jwks_request_timeout_seconds: float = Field(default=10.0, gt=0)
    jwks_min_refresh_seconds: float = Field(default=10.0, ge=0)
    token_cache_size: int = Field(default=10_000, ge=0)

    @field_validator("algorithms")
    @classmethod
    def _asymmetric_only(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [alg for alg in value if alg not in ASYMMETRIC]
        if bad or not value:
            raise ValueError(f"{bad or 'nothing'} not allowed; choose from {list(ASYMMETRIC)} (never none or HS*)")
        return value


class OidcConfig(JwtConfig):
    """The ``oidc`` section (server keys, then the client keys Feast's SDK reads)."""

    client_id: str | None = None
    ui_client_id: str | None = None
    client_secret: str | None = None
    username: str | None = None
    password: str | None = None
    token_refresh_margin_seconds: float = Field(default=30.0, gt=0)


class JwtVerifier:
    """Verifies JWTs of one issuer and turns their claims into principals, with a cache of verified tokens."""

    def __init__(
        self,
        config: JwtConfig,
        audiences: tuple[str, ...],
        to_principal: Callable[[Mapping[str, Any]], Principal],
        *,
        token_file: str | None = None,
        base: str | None = None,
    ) -> None:
        if not config.auth_discovery_url and not (config.issuer and config.jwks_url):
            raise ConfigError(f"auth: type {config.type} needs auth_discovery_url, or both issuer and jwks_url")
        self.config = config
        self._audiences = audiences
        self._to_principal = to_principal
        self._token_file = token_file
        ca = config.ca_cert_path
        if ca and base is not None and not ca.startswith("/"):
            ca = f"{base}/{ca}"
        self._context = ssl_context(config.verify_ssl, ca or None)
        self.issuer = config.issuer
        self.keys: KeySet | None = None
        self._setup_lock = threading.Lock()
        self._down: tuple[float, str] | None = None  # (until when, why) after a failed discovery
        self._cache: dict[str, tuple[Principal, float]] = {}

    def _key_set(self) -> KeySet:
        if self.keys is not None:
            return self.keys
        with self._setup_lock:
            now = time.monotonic()
            if self._down is not None and now < self._down[0]:
                raise BackendUnavailableError(self._down[1])  # fail fast while discovery is down
            if self.keys is None:
                try:
                    self.keys = self._discover()
                except BackendUnavailableError as exc:
                    self._down = (now + max(self.config.jwks_min_refresh_seconds, 1.0), str(exc))
                    raise
        return self.keys

    def _discover(self) -> KeySet:
        """The issuer (from discovery unless configured) and its key set."""
        c = self.config
        jwks_url, timeout = c.jwks_url, c.jwks_request_timeout_seconds
        if c.auth_discovery_url and not (c.issuer and c.jwks_url):
            url, token_file = c.auth_discovery_url, self._token_file
            document = discover(url, context=self._context, timeout=timeout, token_file=token_file)
            self.issuer = self.issuer or document.get("issuer")
            jwks_url = jwks_url or document["jwks_uri"]
        if not self.issuer or not jwks_url:
            raise BackendUnavailableError(f"{c.auth_discovery_url} names no issuer; set auth.issuer")
        return KeySet(
            jwks_url,
            context=self._context,
            timeout=timeout,
            lifespan=c.jwks_cache_lifespan_seconds,
            min_refresh=c.jwks_min_refresh_seconds,
            token_file=self._token_file,
        )

    def cached(self, token: str) -> Principal | None:
        """The principal of a token verified before and not yet expired, else None."""
        found = self._cache.get(token)
        return found[0] if found is not None and time.time() < found[1] else None

    def verify(self, token: str) -> Principal:
        """The principal of a valid token; AuthenticationError(INVALID) otherwise (reason logged)."""
        cached = self._cache.get(token)
        if cached is not None and time.time() < cached[1]:
            return cached[0]
        try:
            claims = self._claims(token)
        except _Refused as exc:
            log.info("authentication refused: %s", exc)
            raise AuthenticationError(INVALID) from None
        principal = self._to_principal(claims)
        self._remember(token, principal, float(claims["exp"]))
        return principal

    def _remember(self, token: str, principal: Principal, exp: float) -> None:
        size = self.config.token_cache_size
        if not size:
            return
        if len(self._cache) >= size:
            now = time.time()
            for old in [t for t, (_, e) in self._cache.items() if e <= now]:
                del self._cache[old]
            if len(self._cache) >= size:
                self._cache.clear()  # full of live tokens: start over rather than grow
        self._cache[token] = (principal, exp)

    def _claims(self, token: str) -> dict[str, Any]:
        import jwt

        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise _Refused(f"malformed token: {exc}") from None
        alg = header.get("alg")
        if alg not in self.config.algorithms:
            raise _Refused(f"algorithm {alg!r} is not allowed")
        keys = self._key_set()
        found = keys.key(header.get("kid"))
        if found is None:
            raise _Refused(f"no key {header.get('kid')!r} in the issuer's JWK set")
        jwk, declared = found
        if declared is not None and declared != alg:
            raise _Refused(f"key {jwk.key_id!r} is for {declared}, the token says {alg}")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=jwk.key,
                algorithms=[alg],
                issuer=self.issuer,
                leeway=self.config.leeway_seconds,
                options={"require": ["exp", "iss"], "verify_aud": False},
            )
        except jwt.PyJWTError as exc:
            raise _Refused(f"{type(exc).__name__}: {exc}") from None
        if self.config.verify_audience and not self._audience_ok(claims):
            raise _Refused(f"audience {claims.get('aud')!r} is not {list(self._audiences or (self.issuer,))}")
        return claims

    def _audience_ok(self, claims: Mapping[str, Any]) -> bool:
        expected = self._audiences or (self.issuer,)  # kubernetes: the API server's default audience
        aud = claims.get("aud")
        given = {aud} if isinstance(aud, str) else set(aud) if isinstance(aud, list) else set()
        return bool(given.intersection(expected)) or claims.get("azp") in expected


class _Refused(Exception):
    """Why a token was refused (logged; the caller only hears INVALID)."""


def _strings(value: Any) -> frozenset[str]:
    if isinstance(value, list):
        return frozenset(v for v in value if isinstance(v, str))
    return frozenset()


def oidc_principal(claims: Mapping[str, Any], client_id: str | None) -> Principal:
    """Feast's claim rules: the name, roles (client's and top-level) and groups of a verified token."""
    name = next((str(claims[c]) for c in _NAME_CLAIMS if claims.get(c)), "")
    roles = _strings(claims.get("roles"))
    access = claims.get("resource_access")
    if client_id and isinstance(access, Mapping) and isinstance(access.get(client_id), Mapping):
        roles |= _strings(access[client_id].get("roles"))
    return Principal(name, roles, _strings(claims.get("groups")), frozenset(), "oidc")


class OidcAuthenticator:
    """``auth: {type: oidc}``."""

    enabled = True

    def __init__(self, config: OidcConfig, base: str | None = None) -> None:
        audiences = config.audience or config.client_id
        if config.verify_audience and not audiences:
            raise ConfigError("auth: type oidc needs audience or client_id (or verify_audience: false)")
        self.config = config
        expected = (audiences,) if isinstance(audiences, str) else tuple(audiences or ())
        client_id = config.client_id
        self.verifier = JwtVerifier(config, expected, lambda claims: oidc_principal(claims, client_id), base=base)

    @classmethod
    def from_section(cls, auth: Mapping[str, Any], base: str | None = None) -> OidcAuthenticator:
        """Validate the section."""
        return cls(parse_config(OidcConfig, auth), base)

    def verify(self, token: str) -> Principal:
        """The principal of a bearer JWT."""
        return self.verifier.verify(token)

    def authenticate(self, authorization: str | None) -> Principal:
        """The principal of an ``Authorization: Bearer <jwt>`` value."""
        return self.verifier.verify(bearer_token(authorization))

    def quick(self, authorization: str | None) -> Principal | None:
        """The principal of a token verified before, else None (then :meth:`authenticate`, in a thread)."""
        return self.verifier.cached(bearer_token(authorization))
