"""``FeatureStore``: the public façade. Each method is a few lines over a service module."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from ladle.config import RepoConfig, load_config, load_yaml
from ladle.definitions import DataSource, Definition, Entity, FeatureService, FeatureView
from ladle.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from ladle.materialize.local import Materializer, ViewResult
    from ladle.offline.base import OfflineStore, RetrievalJob
    from ladle.online.base import OnlineStore
    from ladle.registry.base import Registry, RegistrySnapshot
    from ladle.repo.plan import ApplyResult, RepoContents
    from ladle.retrieval.online import OnlineRetriever
    from ladle.retrieval.push import PushMode
    from ladle.retrieval.response import OnlineResponse
    from ladle.security.principal import Principal

EntityRows: TypeAlias = "Sequence[Mapping[str, Any]] | Mapping[str, Sequence[Any]] | pd.DataFrame"


class FeatureStore:
    """Entry point of the SDK, configured like Feast.

    >>> store = FeatureStore(repo_path="feature_repo")
    >>> store.get_online_features(
    ...     features=["commodity_price_features:current_price"],
    ...     entity_rows=[{"commodity_code": "crude_oil_wti"}]).to_dict()
    """

    def __init__(
        self,
        repo_path: str | Path | None = None,
        config: RepoConfig | Mapping[str, Any] | None = None,
        fs_yaml_file: str | Path | None = None,
        credential: str | None = None,
    ) -> None:
        self._credential = credential
        root = Path(repo_path) if repo_path is not None else Path.cwd()
        if isinstance(config, RepoConfig):
            self.config = config
        elif config is not None:
            self.config = load_config(config, root)
        else:
            yaml_file = Path(fs_yaml_file) if fs_yaml_file is not None else root / "feature_store.yaml"
            self.config = load_yaml(yaml_file, root if repo_path is not None else yaml_file.parent)
        self.repo_path = self.config.repo_path

    @property
    def project(self) -> str:
        """The project name from the config."""
        return self.config.project

    @cached_property
    def principal(self) -> Principal:
        """Who this SDK acts as: its token checked by the configured ``auth:`` (ANONYMOUS under no_auth).

        The token is ``credential``, else ``LADLE_AUTH_TOKEN``, else the ``auth:`` section's client
        keys (see :mod:`ladle.security.credentials`); AuthenticationError if none verifies.
        """
        from ladle.security.credentials import sdk_principal

        return sdk_principal(self.config.auth, self._credential, str(self.repo_path))

    # -- services (built on first use) -------------------------------------------------------
    @cached_property
    def registry(self) -> Registry:
        """The registry of this project (SQL: a SQLite file or PostgreSQL)."""
        from ladle.registry.sql import SqlRegistry

        return SqlRegistry(self.config.registry, self.project, self.repo_path)

    @cached_property
    def online_store(self) -> OnlineStore:
        """The configured online store."""
        from ladle.online.base import open_online_store

        return open_online_store(self.config)

    @cached_property
    def offline_store(self) -> OfflineStore:
        """The configured offline store."""
        from ladle.offline.base import open_offline_store

        return open_offline_store(self.config)

    @cached_property
    def _online(self) -> OnlineRetriever:
        from ladle.retrieval.online import OnlineRetriever

        return OnlineRetriever(self.registry, self.online_store)

    def snapshot(self, allow_cache: bool = True) -> RegistrySnapshot:
        """The current definitions of the project."""
        return self.registry.snapshot(allow_cache=allow_cache)

    def refresh_registry(self) -> None:
        """Reload the registry now instead of waiting for the cache ttl."""
        self.registry.snapshot(allow_cache=False)

    # -- definitions ------------------------------------------------------------------------
    def plan(
        self,
        contents: Sequence[Definition] | RepoContents,
        objects_to_delete: Sequence[Definition] = (),
        partial: bool = False,
        *,
        skip_source_validation: bool = False,
    ) -> ApplyResult:
        """What :meth:`apply` would change, without changing anything (``partial=False``: the repo is everything)."""
        from ladle.repo.plan import plan

        return plan(
            self.registry, self.offline_store, contents, objects_to_delete, partial,
            skip_source_validation=skip_source_validation,
        )  # fmt: skip

    def apply(
        self,
        objects: Sequence[Definition] | RepoContents,
        objects_to_delete: Sequence[Definition] = (),
        partial: bool = True,
        *,
        skip_source_validation: bool = False,
        applied_by: str | None = None,
    ) -> ApplyResult:
        """Register objects (Feast's ``store.apply``); ``partial=False`` also removes the rest."""
        from ladle.repo.plan import apply

        return apply(
            self.registry, self.offline_store, self.online_store, objects, objects_to_delete, partial,
            skip_source_validation=skip_source_validation, applied_by=applied_by,
        )  # fmt: skip

    def teardown(self) -> None:
        """Remove the project's online data and registry entries."""
        from ladle.repo.plan import teardown

        teardown(self.registry, self.online_store)

    def list_entities(self) -> list[Entity]:
        """Every entity of the project."""
        return list(self.snapshot().entities.values())

    def list_data_sources(self) -> list[DataSource]:
        """Every named data source of the project."""
        return list(self.snapshot().data_sources.values())

    def list_feature_views(self) -> list[FeatureView]:
        """Every feature view of the project."""
        return list(self.snapshot().feature_views.values())

    def list_feature_services(self) -> list[FeatureService]:
        """Every feature service of the project."""
        return list(self.snapshot().feature_services.values())

    def get_entity(self, name: str) -> Entity:
        """The entity called ``name``."""
        return self.snapshot().entity(name)

    def get_data_source(self, name: str) -> DataSource:
        """The data source called ``name``."""
        return self.snapshot().data_source(name)

    def get_feature_view(self, name: str) -> FeatureView:
        """The feature view called ``name``."""
        return self.snapshot().feature_view(name)

    def get_feature_service(self, name: str) -> FeatureService:
        """The feature service called ``name``."""
        return self.snapshot().feature_service(name)

    # -- reading ------------------------------------------------------------------------------
    def get_online_features(
        self,
        features: Sequence[str] | FeatureService,
        entity_rows: EntityRows,
        full_feature_names: bool = False,
    ) -> OnlineResponse:
        """Latest values for each entity row; ttl enforced (``OUTSIDE_MAX_AGE``)."""
        return self._online.get_online_features(features, entity_rows, full_feature_names)

    def get_historical_features(
        self,
        entity_df: pd.DataFrame | pa.Table | str | Path,
        features: Sequence[str] | FeatureService | None = None,
        full_feature_names: bool = False,
        feature_service: FeatureService | str | None = None,
    ) -> RetrievalJob:
        """Point-in-time-correct training data for ``entity_df``."""
        from ladle.retrieval.historical import historical_job

        if features is None:
            if feature_service is None:
                raise ConfigError("pass features=[...] or feature_service=...")
            features = (
                feature_service
                if isinstance(feature_service, FeatureService)
                else self.get_feature_service(feature_service)
            )
        return historical_job(self.snapshot(), self.offline_store, entity_df, features, full_feature_names)

    # -- writing ------------------------------------------------------------------------------
    def materialize(
        self,
        start_date: datetime | str,
        end_date: datetime | str,
        feature_views: Sequence[str] | None = None,
        progress: bool = False,
    ) -> list[ViewResult]:
        """Load the newest row per entity in ``[start_date, end_date]`` into the online store."""
        return self._materializer().materialize(start_date, end_date, feature_views, progress=progress)

    def materialize_incremental(
        self, end_date: datetime | str, feature_views: Sequence[str] | None = None, progress: bool = False
    ) -> list[ViewResult]:
        """Materialize from each view's watermark (or ``end - ttl``) up to ``end_date``."""
        return self._materializer().materialize_incremental(end_date, feature_views, progress=progress)

    def _materializer(self) -> Materializer:
        from ladle.materialize.local import Materializer

        batch_rows = self.config.materialization.online_write_batch_size
        return Materializer(self.registry, self.offline_store, self.online_store, self.project, batch_rows)

    def push(
        self,
        push_source_name: str,
        df: pd.DataFrame | pa.Table | Mapping[str, Sequence[Any]],
        to: PushMode = "online",
    ) -> int:
        """Write fresh rows to every view fed by the push source; returns rows written online."""
        from ladle.retrieval.push import push

        return push(self.snapshot(), self.offline_store, self.online_store, push_source_name, df, to)

    def write_to_online_store(
        self, feature_view_name: str, df: pd.DataFrame | pa.Table | Mapping[str, Sequence[Any]]
    ) -> int:
        """Write rows straight into one view's online storage (validated against its schema)."""
        from ladle.retrieval.push import write_to_online_store

        return write_to_online_store(self.snapshot(), self.online_store, feature_view_name, df)

    def close(self) -> None:
        """Release connections held by the stores and stop the registry's refresh thread."""
        if "online_store" in self.__dict__:
            self.online_store.close()
        if "registry" in self.__dict__:
            self.registry.close()
