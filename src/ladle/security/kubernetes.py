"""``auth: {type: kubernetes}``: service-account tokens verified like any OIDC issuer's.

The API server publishes its service-account issuer's keys (``/openid/v1/jwks``); by default
Ladle fetches discovery and keys from the in-cluster API server, trusts the CA of the pod's
service-account mount and sends the pod's own token to read them (the
``system:service-account-issuer-discovery`` role, bound to every service account by default)::

    auth:
      type: kubernetes
      audience: ladle                 # default: the issuer (the API server's own audience)
      roles:                          # principal or "namespace:<ns>" → roles
        system:serviceaccount:ml:trainer: [reader]
        namespace:pipelines: [writer]

A token's principal is ``system:serviceaccount:<ns>:<name>``, its namespace goes into
``namespaces`` and its groups are ``system:serviceaccounts``, ``system:serviceaccounts:<ns>`` and
``system:authenticated``. Feast reads the caller's RoleBindings from the Kubernetes API; Ladle maps
roles in config instead (no API permissions needed, no API call per new caller).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import Field

from ladle.security.base import bearer_token, parse_config
from ladle.security.oidc import JwtConfig, JwtVerifier
from ladle.security.principal import Principal

SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
API_SERVER = "https://kubernetes.default.svc"


class KubernetesConfig(JwtConfig):
    """The ``kubernetes`` section."""

    auth_discovery_url: str | None = f"{API_SERVER}/.well-known/openid-configuration"
    jwks_url: str | None = f"{API_SERVER}/openid/v1/jwks"
    ca_cert_path: str = f"{SA_DIR}/ca.crt"
    #: The token sent to read discovery and keys ('' sends none).
    api_token_file: str = f"{SA_DIR}/token"
    roles: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    # Client side (Feast's key): the token to send; else the pod's own token, else LOCAL_K8S_TOKEN.
    user_token: str | None = None


def kubernetes_principal(claims: Mapping[str, Any], roles: Mapping[str, tuple[str, ...]]) -> Principal:
    """The principal of a verified service-account token, roles from the config mapping."""
    name = str(claims.get("sub", ""))
    namespace = ""
    info = claims.get("kubernetes.io")
    if isinstance(info, Mapping) and isinstance(info.get("namespace"), str):
        namespace = info["namespace"]
    elif name.startswith("system:serviceaccount:"):
        namespace = name.split(":")[2]
    groups = {"system:authenticated"}
    namespaces: frozenset[str] = frozenset()
    if namespace:
        groups |= {"system:serviceaccounts", f"system:serviceaccounts:{namespace}"}
        namespaces = frozenset({namespace})
    granted = set(roles.get(name, ()))
    if namespace:
        granted |= set(roles.get(f"namespace:{namespace}", ()))
    return Principal(name, frozenset(granted), frozenset(groups), namespaces, "kubernetes")


class KubernetesAuthenticator:
    """``auth: {type: kubernetes}``."""

    enabled = True

    def __init__(self, config: KubernetesConfig, base: str | None = None) -> None:
        self.config = config
        roles = dict(config.roles)
        audiences: tuple[str, ...] = ()
        if isinstance(config.audience, str):
            audiences = (config.audience,)
        elif config.audience:
            audiences = tuple(config.audience)
        self.verifier = JwtVerifier(
            config,
            audiences,
            lambda claims: kubernetes_principal(claims, roles),
            token_file=config.api_token_file or None,
            base=base,
        )

    @classmethod
    def from_section(cls, auth: Mapping[str, Any], base: str | None = None) -> KubernetesAuthenticator:
        """Validate the section."""
        return cls(parse_config(KubernetesConfig, auth), base)

    def verify(self, token: str) -> Principal:
        """The principal of a service-account token."""
        return self.verifier.verify(token)

    def authenticate(self, authorization: str | None) -> Principal:
        """The principal of an ``Authorization: Bearer <token>`` value."""
        return self.verify(bearer_token(authorization))

    def quick(self, authorization: str | None) -> Principal | None:
        """The principal of a token verified before, else None (then :meth:`authenticate`, in a thread)."""
        return self.verifier.cached(bearer_token(authorization))
