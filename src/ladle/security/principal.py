"""The authenticated caller: a name plus the roles, groups and namespaces permissions match on."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling, as an authenticator established it.

    ``method`` says how: ``"none"`` (``auth: no_auth``, nothing checked), ``"api_key"``,
    ``"oidc"`` or ``"kubernetes"``. Permissions match on ``roles``, ``groups`` and
    ``namespaces`` (Feast's RoleBasedPolicy, GroupBasedPolicy and NamespaceBasedPolicy).
    """

    name: str
    roles: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()
    namespaces: frozenset[str] = frozenset()
    method: str = "none"

    @property
    def authenticated(self) -> bool:
        """True when an authenticator checked a credential (False under ``no_auth``)."""
        return self.method != "none"


ANONYMOUS = Principal("anonymous")
"""The caller when ``auth: no_auth`` is configured: nothing is checked, nothing enforced."""
