"""A feature service's online values for a batch of entity rows, from the SDK or a feature server.

Both readers take the entity columns (``join key -> values``) of many requests and make **one** read
for all of them, and answer columns (``name -> values``, entity columns first). Which one to use:

* :class:`StoreFeatures` reads the online store in-process (no network hop to a server); the model
  process needs the repo's ``feature_store.yaml`` and the online store's credentials;
* :class:`ServerFeatures` asks a running ``ladle serve`` over REST (:class:`~ladle.client.RemoteClient`):
  the model process needs only the server's URL (and a token when auth is on).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from ladle.client import RemoteClient
from ladle.store import FeatureStore


class FeatureReader(Protocol):
    """Reads one feature service for many entity rows at once."""

    feature_service: str

    def read(self, entities: Mapping[str, Sequence[Any]]) -> dict[str, list[Any]]:
        """Columns ``name -> values`` (one value per entity row, entity columns first)."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


class StoreFeatures:
    """A feature service read through the SDK, straight from the online store."""

    def __init__(
        self,
        feature_service: str,
        *,
        repo_path: str | Path | None = None,
        fs_yaml_file: str | Path | None = None,
        credential: str | None = None,
    ) -> None:
        self.feature_service = feature_service
        self.store = FeatureStore(repo_path=repo_path, fs_yaml_file=fs_yaml_file, credential=credential)
        self.store.request_source = "ray_serve"  # the audit log's `source`
        self.store.get_feature_service(feature_service)  # a wrong name fails at start, not per request

    def read(self, entities: Mapping[str, Sequence[Any]]) -> dict[str, list[Any]]:
        """One online read of the feature service (ttl enforced: stale values come back as None)."""
        service = self.store.get_feature_service(self.feature_service)  # follows registry updates
        rows = {key: list(values) for key, values in entities.items()}
        return self.store.get_online_features(service, rows).to_dict()

    def close(self) -> None:
        """Close the store's connections."""
        self.store.close()


class ServerFeatures:
    """A feature service read from a running feature server over REST."""

    def __init__(
        self,
        feature_service: str,
        *,
        server_url: str,
        credential: str | None = None,
        ca_file: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.feature_service = feature_service
        self.client = RemoteClient(server_url, credential=credential, ca_file=ca_file, timeout=timeout)

    def read(self, entities: Mapping[str, Sequence[Any]]) -> dict[str, list[Any]]:
        """One ``POST /get-online-features`` of the feature service."""
        return self.client.get_online_features(self.feature_service, entities)

    def close(self) -> None:
        """Nothing to release (one HTTP request per read)."""
