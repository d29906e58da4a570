"""The Apache Iceberg offline store (``offline_store: {type: iceberg}``); see docs/iceberg.md."""

from __future__ import annotations

from typing import ClassVar

from ladle.config import RepoConfig, StrictModel
from ladle.offline.iceberg.catalog import Catalogs, IcebergOfflineStoreConfig


class IcebergOfflineStore:
    """Feature history in Iceberg tables (pyiceberg), joined by DuckDB."""

    config_class: ClassVar[type[StrictModel]] = IcebergOfflineStoreConfig

    def __init__(self, config: RepoConfig) -> None:
        self.repo_config = config
        block = config.offline_store
        self.config = block if isinstance(block, IcebergOfflineStoreConfig) else IcebergOfflineStoreConfig()
        self.catalogs = Catalogs(self.config, config.repo_path)
