"""An issuer's signing keys: OpenID discovery, the JWK set, caching and rotation.

:class:`KeySet` fetches the JWK set once, keeps it for ``lifespan`` seconds and refetches early
when a token names a key id it does not know (the issuer rotated its keys) — at most once every
``min_refresh`` seconds, so a stream of tokens with made-up ``kid`` values cannot turn the server
into a load generator against the identity provider.
"""

from __future__ import annotations

import json
import logging
import ssl
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from ladle.errors import BackendUnavailableError

log = logging.getLogger(__name__)


def ssl_context(verify: bool = True, ca_file: str | None = None) -> ssl.SSLContext:
    """A client TLS context: the system CAs, or ``ca_file``; no verification when ``verify`` is False."""
    context = ssl.create_default_context(cafile=ca_file or None)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def fetch_json(
    url: str,
    *,
    context: ssl.SSLContext | None = None,
    timeout: float = 10.0,
    token_file: str | None = None,
    data: bytes | None = None,
) -> Any:
    """GET (or POST ``data``) ``url`` and parse the JSON answer; BackendUnavailableError if that fails."""
    headers = {"Accept": "application/json"}
    if token_file and Path(token_file).is_file():
        headers["Authorization"] = "Bearer " + Path(token_file).read_text().strip()
    if data is not None:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    request = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            body = response.read()
    except urllib.error.HTTPError as exc:
        detail = exc.read()[:300].decode("utf-8", "replace")
        raise BackendUnavailableError(f"{url} answered HTTP {exc.code}: {detail}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise BackendUnavailableError(f"cannot fetch {url}: {getattr(exc, 'reason', exc)}") from None
    try:
        return json.loads(body)
    except ValueError:
        raise BackendUnavailableError(f"{url} did not answer JSON") from None


def discover(
    url: str, *, context: ssl.SSLContext | None, timeout: float, token_file: str | None = None
) -> dict[str, Any]:
    """The OpenID configuration document at ``url`` (must name ``issuer`` and ``jwks_uri``)."""
    document = fetch_json(url, context=context, timeout=timeout, token_file=token_file)
    if not isinstance(document, dict) or not document.get("jwks_uri"):
        raise BackendUnavailableError(f"{url} is not an OpenID configuration (no jwks_uri)")
    return document


class KeySet:
    """The JWK set of one issuer, cached and refreshed (thread-safe)."""

    def __init__(
        self,
        url: str,
        *,
        context: ssl.SSLContext | None,
        timeout: float = 10.0,
        lifespan: float = 300.0,
        min_refresh: float = 10.0,
        token_file: str | None = None,
    ) -> None:
        self.url = url
        self._context = context
        self._timeout = timeout
        self._lifespan = lifespan
        self._min_refresh = min_refresh
        self._token_file = token_file
        self._keys: dict[str | None, tuple[Any, str | None]] = {}
        self._fetched = float("-inf")
        self._lock = threading.Lock()
        self._down: tuple[float, str] | None = None  # (until when, why) after a failed first fetch
        self.fetches = 0

    def _refresh(self) -> None:
        import jwt

        try:
            data = fetch_json(self.url, context=self._context, timeout=self._timeout, token_file=self._token_file)
        except BackendUnavailableError as exc:
            if not self._keys:
                # No keys at all: fail fast for a while instead of every request waiting on a dead provider.
                self._down = (time.monotonic() + max(self._min_refresh, 1.0), str(exc))
                raise
            # The identity provider is down: keep verifying with the keys we have, retry later.
            log.warning("cannot refresh the JWK set from %s; keeping the %d known keys", self.url, len(self._keys))
            self._fetched = time.monotonic() - self._lifespan + self._min_refresh
            return
        self.fetches += 1
        self._fetched = time.monotonic()
        keys: dict[str | None, tuple[Any, str | None]] = {}
        for entry in data.get("keys", []) if isinstance(data, dict) else []:
            if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
                continue  # only signing keys (a key without "use" may sign)
            try:
                keys[entry.get("kid")] = (jwt.PyJWK(entry), entry.get("alg"))
            except jwt.PyJWTError as exc:
                log.warning("skipping key %r of %s: %s", entry.get("kid"), self.url, exc)
        if not keys:
            raise BackendUnavailableError(f"{self.url}: no usable signing keys")
        self._keys = keys

    def key(self, kid: str | None) -> tuple[Any, str | None] | None:
        """``(jwt.PyJWK, its declared alg or None)`` for ``kid``, or None if the issuer has no such key.

        A set of one key also answers a token without ``kid``.
        """
        now = time.monotonic()
        with self._lock:
            if self._down is not None and now < self._down[0]:
                raise BackendUnavailableError(self._down[1])
            self._down = None
            if now - self._fetched > self._lifespan:
                self._refresh()
            found = self._lookup(kid)
            if found is None and now - self._fetched >= self._min_refresh:
                self._refresh()  # an unknown kid: the issuer may have rotated its keys
                found = self._lookup(kid)
        return found

    def _lookup(self, kid: str | None) -> tuple[Any, str | None] | None:
        if kid is None:
            return next(iter(self._keys.values())) if len(self._keys) == 1 else None
        return self._keys.get(kid)
