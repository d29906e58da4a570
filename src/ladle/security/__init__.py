"""Security: who is calling (authentication), what they may do (permissions), TLS settings.

* :mod:`.principal`: :class:`Principal`, the authenticated caller every check takes.
* :mod:`.auth`: the ``auth:`` section of ``feature_store.yaml`` and the authenticators
  (``no_auth``, API keys, OIDC, Kubernetes service-account tokens).
"""

from ladle.security.principal import ANONYMOUS, Principal

__all__ = ["ANONYMOUS", "Principal"]
