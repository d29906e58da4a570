"""The ``remote`` online store's settings (Feast's keys: ``path`` and ``cert``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ladle.config import StrictModel


class RemoteOnlineStoreConfig(StrictModel):
    """``online_store: {type: remote, path: http://host:6566, cert: ca.pem}``.

    Credentials are the SDK's (``FeatureStore(credential=...)``, ``LADLE_AUTH_TOKEN``, or the
    ``auth:`` section's client keys), sent as ``Authorization: Bearer``.
    """

    type: Literal["remote"] = "remote"
    path: str = Field("http://localhost:6566", description="the server's REST base URL (http:// or https://)")
    cert: str | None = Field(None, description="CA bundle (PEM) to verify an https server with; system CAs if unset")
    verify: bool = Field(True, description="verify the server's TLS certificate (turn off only for tests)")
    timeout_seconds: float = Field(10.0, gt=0, description="per-request timeout")
    connection_pool_size: int = Field(50, gt=0, description="kept-alive connections per process")
    connection_retries: int = Field(3, ge=0, description="retries of a request that failed to connect")
