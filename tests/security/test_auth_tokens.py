"""The authenticators on their own: API keys, OIDC tokens from a real JWKS server, Kubernetes tokens."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from ladle.errors import AuthenticationError, BackendUnavailableError, ConfigError
from ladle.security.api_keys import ApiKeyConfig, ApiKeyEntry, hash_key, new_key
from ladle.security.auth import INVALID, MISSING, AuthConfig, authenticator_for
from ladle.security.credentials import client_token, sdk_principal
from ladle.security.kubernetes import KubernetesConfig
from ladle.security.oidc import OidcConfig
from ladle.security.principal import ANONYMOUS
from security.auth_idp import CLIENT_ID, CLIENT_SECRET, IdP


@pytest.fixture(scope="module")
def idp() -> Iterator[IdP]:
    provider = IdP()
    yield provider
    provider.close()


def oidc(idp: IdP, **extra: Any) -> Any:
    return authenticator_for({"type": "oidc", "auth_discovery_url": idp.discovery_url, "client_id": CLIENT_ID, **extra})


def refused(auth: Any, header: str | None) -> str:
    with pytest.raises(AuthenticationError) as info:
        auth.authenticate(header)
    return str(info.value)


# -- config ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("section", "words"),
    [
        ({"type": "ldap"}, "not one of"),
        ({"type": "api_key"}, "at least one key"),
        ({"type": "api_key", "keys": [{"name": "a", "sha256": "abc"}]}, "SHA-256 hex digest"),
        ({"type": "api_key", "keys": [{"name": "a", "sha256": "0" * 64}], "kyes": []}, "kyes"),
        ({"type": "oidc", "client_id": "x"}, "auth_discovery_url"),
        ({"type": "oidc", "auth_discovery_url": "http://x"}, "audience or client_id"),
        ({"type": "oidc", "auth_discovery_url": "http://x", "client_id": "x", "algorithms": ["none"]}, "never none"),
        ({"type": "oidc", "auth_discovery_url": "http://x", "client_id": "x", "algorithms": ["HS256"]}, "HS"),
        ({"type": "no_auth", "public": ["everything"]}, "unknown endpoints"),
        ({"type": "kubernetes", "roles": ["x"]}, "auth.roles"),
    ],
)
def test_bad_sections_are_config_errors(section: dict[str, Any], words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        authenticator_for(section)


def test_no_auth_is_anonymous_and_disabled() -> None:
    auth = authenticator_for(None)
    assert not auth.enabled
    assert auth.authenticate("Bearer whatever") is ANONYMOUS
    assert sdk_principal({"type": "no_auth"}, "anything") is ANONYMOUS


# -- API keys -------------------------------------------------------------------------------
def test_api_keys_inline_and_from_a_file(tmp_path: Path) -> None:
    inline, filed = new_key(), new_key()
    assert inline.startswith("ladle_") and len(inline) > 40 and inline != filed
    (tmp_path / "keys.yaml").write_text(
        f"keys:\n  - name: loader\n    sha256: {hash_key(filed)}\n    groups: [etl]\n    namespaces: [ml]\n"
    )
    section = {
        "type": "api_key",
        "keys": [{"name": "trainer", "sha256": hash_key(inline).upper(), "roles": ["reader"]}],
        "keys_file": "keys.yaml",
    }
    auth = authenticator_for(section, str(tmp_path))
    trainer = auth.authenticate(f"Bearer {inline}")
    assert (trainer.name, trainer.roles, trainer.method) == ("trainer", frozenset({"reader"}), "api_key")
    loader = auth.authenticate(f"bearer  {filed} ")
    assert (loader.name, loader.groups, loader.namespaces) == ("loader", frozenset({"etl"}), frozenset({"ml"}))
    assert refused(auth, f"Bearer {inline}x") == INVALID
    assert refused(auth, None) == MISSING
    assert refused(auth, f"Basic {inline}") == MISSING
    assert refused(auth, "Bearer ") == MISSING
    with pytest.raises(ConfigError, match="cannot read"):
        authenticator_for({**section, "keys_file": "missing.yaml"}, str(tmp_path))
    with pytest.raises(ConfigError, match="same key"):
        authenticator_for({"type": "api_key", "keys": [section["keys"][0], {"name": "b", "sha256": hash_key(inline)}]})


def test_sdk_principal_takes_the_token_from_code_env_or_config(monkeypatch: pytest.MonkeyPatch) -> None:
    key = new_key()
    section = {"type": "api_key", "keys": [{"name": "sdk", "sha256": hash_key(key)}]}
    monkeypatch.delenv("LADLE_AUTH_TOKEN", raising=False)
    with pytest.raises(AuthenticationError, match=MISSING):
        sdk_principal(section, None)
    assert sdk_principal(section, key).name == "sdk"
    assert sdk_principal({**section, "token": key}, None).name == "sdk"
    monkeypatch.setenv("MY_KEY", key)
    assert sdk_principal({**section, "token_env_var": "MY_KEY"}, None).name == "sdk"
    with pytest.raises(ConfigError, match="NOT_SET"):
        client_token({**section, "token_env_var": "NOT_SET"})
    monkeypatch.setenv("LADLE_AUTH_TOKEN", "wrong")
    with pytest.raises(AuthenticationError, match=INVALID):
        sdk_principal(section, None)


# -- OIDC -----------------------------------------------------------------------------------
def test_a_valid_token_gives_feasts_claims(idp: IdP) -> None:
    principal = oidc(idp).authenticate(f"Bearer {idp.token()}")
    assert principal.name == "alice"
    assert principal.roles == {"reader", "global-role"}
    assert principal.groups == {"analysts"}
    assert principal.method == "oidc"
    # The name falls back through upn, azp, appid, sub; Keycloak's azp satisfies the audience.
    bot = oidc(idp).verify(idp.token(preferred_username=None, aud="account", azp=CLIENT_ID))
    assert bot.name == CLIENT_ID


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _unsigned(idp: IdP) -> str:
    return f"{_b64({'alg': 'none', 'typ': 'JWT', 'kid': 'k1'})}.{_b64(idp.claims())}."


def _hmac_with_public_key(idp: IdP) -> str:
    from cryptography.hazmat.primitives import serialization

    public = (
        idp.keys["k1"]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    signing = f"{_b64({'alg': 'HS256', 'kid': 'k1', 'typ': 'JWT'})}.{_b64(idp.claims())}"
    signature = base64.urlsafe_b64encode(hmac.new(public, signing.encode(), hashlib.sha256).digest()).rstrip(b"=")
    return f"{signing}.{signature.decode()}"


def _flip_signature(token: str) -> str:
    head, claims, signature = token.split(".")
    raw = bytearray(base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)))
    raw[10] ^= 0xFF
    return f"{head}.{claims}.{base64.urlsafe_b64encode(bytes(raw)).rstrip(b'=').decode()}"


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda idp: idp.token(aud="someone-else"), id="wrong-audience"),
        pytest.param(lambda idp: idp.token(iss="http://evil.example"), id="wrong-issuer"),
        pytest.param(lambda idp: idp.token(exp=int(time.time()) - 3600), id="expired"),
        pytest.param(lambda idp: idp.token(exp=None), id="no-exp"),
        pytest.param(lambda idp: idp.token(nbf=int(time.time()) + 3600), id="not-yet-valid"),
        pytest.param(lambda idp: idp.token(iat=int(time.time()) + 3600), id="issued-in-the-future"),
        pytest.param(_unsigned, id="alg-none"),
        pytest.param(_hmac_with_public_key, id="hs256-with-the-public-key"),
        pytest.param(lambda idp: _flip_signature(idp.token()), id="bad-signature"),
        pytest.param(lambda idp: idp.token("forged"), id="unpublished-key"),
        pytest.param(lambda idp: "not.a.jwt", id="garbage"),
    ],
)
def test_bad_tokens_are_refused(idp: IdP, make: Any) -> None:
    if "forged" not in idp.keys:
        idp.add_key("forged", publish=False)
    auth = oidc(idp, jwks_min_refresh_seconds=0)
    assert auth.verify(idp.token()).name == "alice"  # the same authenticator accepts a good one
    with pytest.raises(AuthenticationError, match=INVALID):
        auth.verify(make(idp))


def test_leeway_forgives_small_clock_skew(idp: IdP) -> None:
    token = idp.token(exp=int(time.time()) - 5)
    assert oidc(idp, leeway_seconds=30).verify(token).name == "alice"
    with pytest.raises(AuthenticationError):
        oidc(idp, leeway_seconds=0).verify(token)


def test_unknown_kid_refetches_once_then_rotation_works() -> None:
    idp = IdP()
    try:
        auth = oidc(idp, jwks_min_refresh_seconds=3600)
        assert auth.verify(idp.token("k1")).name == "alice"
        assert idp.jwks_fetches == 1
        # Made-up kids: at most one refetch per min_refresh window (none here: the set is fresh).
        idp.add_key("ghost", publish=False)
        for _ in range(20):
            with pytest.raises(AuthenticationError):
                auth.verify(idp.token("ghost", sub=f"{_}"))
        assert idp.jwks_fetches == 1
        # A real rotation: with a short window the new kid is fetched, and the old key is gone.
        quick = oidc(idp, jwks_min_refresh_seconds=0)
        old = idp.token("k1", sub="before-rotation")
        assert quick.verify(old).name == "alice"
        idp.rotate("k2")
        fetches = idp.jwks_fetches
        assert quick.verify(idp.token("k2")).name == "alice"
        assert idp.jwks_fetches == fetches + 1
        with pytest.raises(AuthenticationError):
            quick.verify(idp.token("k1", sub="after-rotation"))
        # An EC key works too.
        idp.add_key("ec1", kind="ec")
        assert quick.verify(idp.token("ec1")).name == "alice"
    finally:
        idp.close()


def test_verified_tokens_are_cached_until_exp(idp: IdP) -> None:
    auth = oidc(idp)
    token = idp.token(sub="cache-me")
    auth.verify(token)
    verifier = auth.verifier
    assert token in verifier._cache
    # A cached token is answered without a signature check: prove it by breaking the key set.
    keys, verifier.keys = verifier.keys, None
    verifier.config = verifier.config.model_copy(update={"auth_discovery_url": "http://127.0.0.1:9/none"})
    assert auth.verify(token).name == "alice"
    verifier.keys = keys


def test_an_unreachable_issuer_is_unavailable_not_unauthenticated(idp: IdP) -> None:
    auth = authenticator_for({"type": "oidc", "auth_discovery_url": "http://127.0.0.1:9/x", "client_id": "c"})
    with pytest.raises(BackendUnavailableError, match="cannot fetch"):
        auth.verify(idp.token())


def test_a_dead_key_url_fails_fast_and_known_keys_outlive_an_outage() -> None:
    idp = IdP()
    try:
        dead = authenticator_for({"type": "oidc", "issuer": idp.issuer, "jwks_url": f"{idp.issuer}/gone",
                                  "client_id": CLIENT_ID, "jwks_min_refresh_seconds": 60})  # fmt: skip
        with pytest.raises(BackendUnavailableError, match="404"):
            dead.verify(idp.token())
        asked = idp.requests
        for _ in range(5):  # no request per token while the provider is known to be down
            with pytest.raises(BackendUnavailableError, match="404"):
                dead.verify(idp.token(sub=str(_)))
        assert idp.requests == asked
        # Keys already fetched keep working when the provider goes away after their lifespan.
        live = oidc(idp, jwks_cache_lifespan_seconds=0.01)
        assert live.verify(idp.token(sub="before")).name == "alice"
        idp.close()
        time.sleep(0.05)
        assert live.verify(idp.token(sub="during-outage")).name == "alice"
    finally:
        idp.close()


def test_explicit_issuer_and_jwks_url_skip_discovery(idp: IdP) -> None:
    auth = authenticator_for(
        {"type": "oidc", "issuer": idp.issuer, "jwks_url": idp.jwks_url, "audience": ["other", CLIENT_ID]}
    )
    assert auth.verify(idp.token()).name == "alice"


def test_client_credentials_grant_gets_a_token(idp: IdP, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LADLE_AUTH_TOKEN", raising=False)
    section = {
        "type": "oidc",
        "auth_discovery_url": idp.discovery_url,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
    }
    grants = idp.token_grants
    principal = sdk_principal(section, None)
    assert principal.name == "service-bot"
    assert sdk_principal(section, None).name == "service-bot"
    assert idp.token_grants == grants + 1  # reused until it nears its expiry
    with pytest.raises(BackendUnavailableError, match="401"):
        client_token({**section, "client_secret": "wrong"})
    feast_token = idp.token(sub="from-env")
    monkeypatch.setenv("FEAST_OIDC_TOKEN", feast_token)
    assert client_token({"type": "oidc"}) == feast_token


# -- Kubernetes -----------------------------------------------------------------------------
def test_kubernetes_service_account_tokens(idp: IdP) -> None:
    section = {
        "type": "kubernetes",
        "auth_discovery_url": idp.discovery_url,
        "jwks_url": idp.jwks_url,
        "ca_cert_path": "",
        "api_token_file": "",
        "audience": "ladle",
        "roles": {"system:serviceaccount:ml:trainer": ["reader"], "namespace:ml": ["ml-user"]},
    }
    auth = authenticator_for(section)
    claims = {
        "sub": "system:serviceaccount:ml:trainer",
        "aud": ["ladle"],
        "preferred_username": None,
        "kubernetes.io": {"namespace": "ml", "serviceaccount": {"name": "trainer"}},
    }
    principal = auth.authenticate(f"Bearer {idp.token(**claims)}")
    assert principal.name == "system:serviceaccount:ml:trainer"
    assert principal.namespaces == {"ml"}
    assert principal.roles == {"reader", "ml-user"}
    assert {"system:serviceaccounts", "system:serviceaccounts:ml"} <= principal.groups
    assert principal.method == "kubernetes"
    other = auth.verify(idp.token(**{**claims, "sub": "system:serviceaccount:web:app", "kubernetes.io": None}))
    assert other.namespaces == {"web"} and other.roles == frozenset()
    with pytest.raises(AuthenticationError):  # a token for another audience (e.g. the API server's)
        auth.verify(idp.token(**{**claims, "aud": [idp.issuer]}))
    # Without an audience configured, the issuer (the API server's default audience) is required.
    default = authenticator_for({**section, "audience": None})
    assert default.verify(idp.token(**{**claims, "aud": [idp.issuer]})).name.endswith(":trainer")


# -- docs -----------------------------------------------------------------------------------
@pytest.mark.parametrize("model", [AuthConfig, ApiKeyConfig, ApiKeyEntry, OidcConfig, KubernetesConfig])
def test_every_auth_key_is_documented(model: type[BaseModel]) -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "security.md").read_text()
    missing = [name for name in model.model_fields if f"`{name}`" not in text]
    assert not missing, f"{model.__name__} keys missing from docs/security.md (Authentication): {missing}"
