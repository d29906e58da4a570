"""The client side: which token this process sends or acts with (SDK, CLI, :class:`~ladle.client.RemoteClient`).

:func:`client_token` looks, in order, at:

1. the credential given in code (``FeatureStore(credential=...)``, ``RemoteClient(credential=...)``,
   the CLI's ``--token``);
2. the environment variable ``LADLE_AUTH_TOKEN``;
3. the ``auth:`` section: ``token``, then ``token_env_var`` (an error if that variable is unset);
4. per type, Feast's sources: ``oidc`` — a client-credentials grant (``client_id`` +
   ``client_secret``, or a password grant with ``username`` + ``password``) at the token endpoint
   of ``auth_discovery_url`` (the token is reused until 30 s before it expires), else
   ``FEAST_OIDC_TOKEN``; ``kubernetes`` — ``user_token``, the pod's service-account token, else
   ``LOCAL_K8S_TOKEN``.

It answers None when there is nothing to send (``no_auth``, or no source configured).
"""

from __future__ import annotations

import os
import threading
import time
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ladle.errors import AuthenticationError, ConfigError
from ladle.security.auth import MISSING, authenticator_for
from ladle.security.principal import ANONYMOUS, Principal

TOKEN_ENV = "LADLE_AUTH_TOKEN"
SA_TOKEN_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/token"

_grants: dict[tuple[str, ...], tuple[str, float]] = {}
_grants_lock = threading.Lock()


def client_token(auth: Mapping[str, Any] | None, credential: str | None = None) -> str | None:
    """The token to send (see the module docstring for the order), or None."""
    if credential:
        return credential
    if os.environ.get(TOKEN_ENV):
        return os.environ[TOKEN_ENV]
    auth = auth or {}
    kind = auth.get("type", "no_auth")
    if kind == "no_auth":
        return None
    if auth.get("token"):
        return str(auth["token"])
    if auth.get("token_env_var"):
        name = str(auth["token_env_var"])
        if not os.environ.get(name):
            raise ConfigError(f"auth.token_env_var: the environment variable {name} is not set or empty")
        return os.environ[name]
    if kind == "oidc":
        if auth.get("client_secret") or auth.get("username"):
            return _granted_token(auth)
        return os.environ.get("FEAST_OIDC_TOKEN") or None
    if kind == "kubernetes":
        if auth.get("user_token"):
            return str(auth["user_token"])
        path = Path(SA_TOKEN_FILE)
        if path.is_file() and path.read_text().strip():
            return path.read_text().strip()
        return os.environ.get("LOCAL_K8S_TOKEN") or None
    return None


def _granted_token(auth: Mapping[str, Any]) -> str:
    """A token from the identity provider's token endpoint (client credentials or password grant)."""
    from ladle.security.jwks import discover, fetch_json, ssl_context

    discovery, client_id = auth.get("auth_discovery_url"), auth.get("client_id")
    if not discovery or not client_id:
        raise ConfigError("auth: a token grant needs auth_discovery_url and client_id")
    form = {"client_id": str(client_id)}
    if auth.get("client_secret"):
        form["client_secret"] = str(auth["client_secret"])
    if auth.get("username"):
        form |= {"grant_type": "password", "username": str(auth["username"]), "password": str(auth.get("password"))}
    else:
        form["grant_type"] = "client_credentials"
    key = (str(discovery), *sorted(f"{k}={v}" for k, v in form.items()))
    margin = float(auth.get("token_refresh_margin_seconds", 30.0))
    with _grants_lock:
        cached = _grants.get(key)
    if cached is not None and time.time() < cached[1] - margin:
        return cached[0]
    context = ssl_context(bool(auth.get("verify_ssl", True)), str(auth.get("ca_cert_path") or "") or None)
    timeout = float(auth.get("jwks_request_timeout_seconds", 10.0))
    endpoint = discover(str(discovery), context=context, timeout=timeout).get("token_endpoint")
    if not endpoint:
        raise ConfigError(f"auth.auth_discovery_url: {discovery} names no token_endpoint")
    answer = fetch_json(str(endpoint), context=context, timeout=timeout, data=urllib.parse.urlencode(form).encode())
    token = answer.get("access_token") if isinstance(answer, dict) else None
    if not isinstance(token, str) or not token:
        raise AuthenticationError(f"the token endpoint {endpoint} gave no access_token")
    expires_in = answer.get("expires_in")
    if isinstance(expires_in, (int, float)):
        with _grants_lock:
            _grants[key] = (token, time.time() + float(expires_in))
    return token


def sdk_principal(auth: Mapping[str, Any] | None, credential: str | None, base: str | None = None) -> Principal:
    """Who an SDK process acts as: its token (:func:`client_token`) checked by the configured authenticator.

    ANONYMOUS under ``no_auth``; AuthenticationError when auth is on and there is no token or it
    does not verify.
    """
    authenticator = authenticator_for(auth, base)
    if not authenticator.enabled:
        return ANONYMOUS
    token = client_token(auth, credential)
    if token is None:
        raise AuthenticationError(MISSING)
    return authenticator.verify(token)
