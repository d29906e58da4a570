"""What the monitors need of a feature store (``FeatureStore`` is one), as a protocol.

The monitors take this rather than :class:`ladle.store.FeatureStore` so that the store's façade
can call into them without an import loop.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ladle.config import RepoConfig

if TYPE_CHECKING:
    from ladle.offline.base import OfflineStore, RetrievalJob
    from ladle.registry.base import RegistrySnapshot


class MonitoredStore(Protocol):
    """The parts of a feature store drift, skew and freshness checks use."""

    @property
    def config(self) -> RepoConfig:
        """The repo configuration (registry, ``monitoring:`` block)."""
        ...

    @property
    def project(self) -> str:
        """The project name."""
        ...

    @property
    def repo_path(self) -> Path:
        """The repo directory (relative paths resolve against it)."""
        ...

    @property
    def offline_store(self) -> OfflineStore:
        """The offline store."""
        ...

    def snapshot(self, allow_cache: bool = True) -> RegistrySnapshot:
        """The current definitions."""
        ...

    def get_online_features(self, features: Any, entity_rows: Any, full_feature_names: bool = False) -> Any:
        """Online values (an ``OnlineResponse``), ttl applied."""
        ...

    def get_historical_features(
        self, entity_df: Any, features: Any = None, full_feature_names: bool = False
    ) -> RetrievalJob:
        """A point-in-time join."""
        ...
