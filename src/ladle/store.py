"""``FeatureStore``: the public façade. Each method is a few lines over a service module."""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

from ladle.config import RepoConfig, load_config, load_yaml, parse_size
from ladle.definitions import (
    AuthzedAction,
    DataSource,
    Definition,
    Entity,
    FeatureService,
    FeatureView,
    Permission,
    StreamFeatureView,
)
from ladle.errors import ConfigError
from ladle.store_governance import GovernanceMethods
from ladle.store_records import RecordMethods
from ladle.store_writes import WriteMethods, push_columns

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from ladle.materialize.local import Materializer
    from ladle.materialize.ray_engine import RayEngine
    from ladle.monitor.lineage import Lineage
    from ladle.offline.base import AsOf, OfflineStore, RetrievalJob
    from ladle.online.base import OnlineStore
    from ladle.online.remote.store import RemoteOnlineStore
    from ladle.registry.base import ObjectChange, Registry, RegistrySnapshot
    from ladle.repo.plan import ApplyResult, RepoContents
    from ladle.retrieval.online import OnlineRetriever
    from ladle.retrieval.push import PushMode
    from ladle.retrieval.response import OnlineResponse
    from ladle.security.permissions import Enforcer, Resource
    from ladle.security.principal import Principal

T = TypeVar("T")
EntityRows: TypeAlias = "Sequence[Mapping[str, Any]] | Mapping[str, Sequence[Any]] | pd.DataFrame"


class FeatureStore(GovernanceMethods, RecordMethods, WriteMethods):
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
        #: Where calls come from, for the audit log: "sdk", or "cli" when the CLI built the store.
        self.request_source = "sdk"
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

    @cached_property
    def enforcer(self) -> Enforcer:
        """Checks calls against the registry's permissions (on when ``auth:`` is configured)."""
        from ladle.security.permissions import Enforcer, auth_configured

        return Enforcer(auth_configured(self.config.auth))

    def _check(
        self,
        snapshot: RegistrySnapshot,
        actions: AuthzedAction | Sequence[AuthzedAction],
        resources: Sequence[Resource],
        event: str,
        principal: Principal | None = None,
        source: str | None = None,
    ) -> None:
        self.enforcer.check(
            snapshot, principal or self.principal, actions, resources, event=event, source=source or self.request_source
        )

    def _describe(self, snapshot: RegistrySnapshot, obj: Any) -> Any:
        if snapshot.permissions:
            from ladle.security.permissions import Resource

            self._check(snapshot, AuthzedAction.DESCRIBE, [Resource.of(obj)], "describe")
        return obj

    def _listed(self, snapshot: RegistrySnapshot, objects: Mapping[str, Any]) -> list[Any]:
        return self.enforcer.permitted(snapshot, self.principal, AuthzedAction.DESCRIBE, objects.values())

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
    def lineage(self) -> Lineage:
        """OpenLineage run events of this store's jobs (a no-op unless ``lineage:`` is configured)."""
        from ladle.monitor.lineage import Lineage

        return Lineage(self.config)

    @cached_property
    def _online(self) -> OnlineRetriever:
        from ladle.retrieval.online import OnlineRetriever

        return OnlineRetriever(self.registry, self.online_store)

    @cached_property
    def _ray(self) -> RayEngine | None:
        """The Ray engine when ``batch_engine: ray`` (connected on first use), else None."""
        if self.config.batch_engine.type == "local":
            return None
        from ladle.materialize.ray_engine import RayEngine

        return RayEngine(self.config)

    def _materializer(self) -> Materializer:
        from ladle.materialize.local import Materializer

        settings = self.config.materialization
        args = (self.registry, self.offline_store, self.online_store, self.project, settings.online_write_batch_size)
        budget = parse_size(settings.memory_budget)
        if self._ray is not None:
            from ladle.materialize.ray_engine import RayMaterializer

            return RayMaterializer(*args, bind=self.bind_views, memory_budget=budget, engine=self._ray)
        return Materializer(*args, bind=self.bind_views, memory_budget=budget)

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
        force: bool = False,
        records: Sequence[ObjectChange] = (),
    ) -> ApplyResult:
        """Register objects (Feast's ``store.apply``); ``partial=False`` also removes the rest.

        ``records`` (saved datasets, as ``ladle import-feast`` writes them) go into the same transaction.

        A change that breaks a consumer pinned to an older version raises PinConflictError unless
        ``force`` (docs/versions.md).

        With permissions registered and ``auth:`` configured, each added, changed or removed object
        needs CREATE, UPDATE or DELETE; one refusal applies nothing.
        """
        from ladle.repo.plan import apply

        authorize, actions, changed = self._change_checker("apply")

        def work() -> ApplyResult:
            return apply(
                self.registry, self.offline_store, self.online_store, objects, objects_to_delete, partial,
                skip_source_validation=skip_source_validation, applied_by=applied_by, authorize=authorize,
                force=force, records=records,
            )  # fmt: skip

        from ladle.monitor.lineage_jobs import apply_work

        return self._audited("apply", actions, lambda: changed, apply_work(self, objects, work))

    def teardown(self) -> None:
        """Remove the project's online data and registry entries."""
        from ladle.repo.plan import teardown

        authorize, actions, removed = self._change_checker("teardown")
        work = lambda: teardown(self.registry, self.online_store, authorize)  # noqa: E731
        self._audited("teardown", actions, lambda: removed, work)

    def _change_checker(self, event: str) -> tuple[Callable[[RegistrySnapshot, Any], None], set[str], list[str]]:
        """The ``authorize`` hook of apply/teardown, and the actions and resources it saw (for the audit line)."""
        from ladle.security.permissions import CHANGE_ACTIONS, check_changes

        actions: set[str] = set()
        resources: list[str] = []

        def authorize(base: RegistrySnapshot, changes: Sequence[tuple[Any, Any]]) -> None:
            actions.update(CHANGE_ACTIONS[diff.action].name for diff, _ in changes)
            resources.extend(f"{diff.kind}:{diff.name}" for diff, _ in changes)
            check_changes(self.enforcer, base, self.principal, changes, event=event, source=self.request_source)

        return authorize, actions, resources

    # list_* return only what the caller may DESCRIBE; get_* refuse (PermissionDeniedError).
    def list_entities(self) -> list[Entity]:
        """Every entity of the project (that the caller may DESCRIBE)."""
        snapshot = self.snapshot()
        return self._listed(snapshot, snapshot.entities)

    def list_data_sources(self) -> list[DataSource]:
        """Every named data source of the project (that the caller may DESCRIBE)."""
        snapshot = self.snapshot()
        return self._listed(snapshot, snapshot.data_sources)

    def list_feature_views(self) -> list[FeatureView]:
        """Every feature view of the project (that the caller may DESCRIBE)."""
        snapshot = self.snapshot()
        return self._listed(snapshot, snapshot.feature_views)

    def list_stream_feature_views(self) -> list[StreamFeatureView]:
        """Every stream feature view of the project (that the caller may DESCRIBE)."""
        snapshot = self.snapshot()
        streams = {n: v for n, v in snapshot.feature_views.items() if isinstance(v, StreamFeatureView)}
        return self._listed(snapshot, streams)

    def list_feature_services(self) -> list[FeatureService]:
        """Every feature service of the project (that the caller may DESCRIBE)."""
        snapshot = self.snapshot()
        return self._listed(snapshot, snapshot.feature_services)

    def list_permissions(self) -> list[Permission]:
        """Every permission of the project (that the caller may DESCRIBE)."""
        snapshot = self.snapshot()
        return self._listed(snapshot, snapshot.permissions)

    def get_entity(self, name: str) -> Entity:
        """The entity called ``name``."""
        snapshot = self.snapshot()
        return self._describe(snapshot, snapshot.entity(name))  # type: ignore[no-any-return]

    def get_data_source(self, name: str) -> DataSource:
        """The data source called ``name``."""
        snapshot = self.snapshot()
        return self._describe(snapshot, snapshot.data_source(name))  # type: ignore[no-any-return]

    def get_feature_view(self, name: str) -> FeatureView:
        """The feature view called ``name``."""
        snapshot = self.snapshot()
        return self._describe(snapshot, snapshot.feature_view(name))  # type: ignore[no-any-return]

    def get_stream_feature_view(self, name: str) -> StreamFeatureView:
        """The stream feature view called ``name`` (FeatureViewNotFoundError for a plain feature view)."""
        from ladle.errors import FeatureViewNotFoundError

        snapshot = self.snapshot()
        view = snapshot.feature_view(name)
        if not isinstance(view, StreamFeatureView):
            raise FeatureViewNotFoundError(
                name, self.project, detail="It is a feature view, not a stream feature view."
            )
        return self._describe(snapshot, view)  # type: ignore[no-any-return]

    def bind_views(self, views: Iterable[FeatureView]) -> list[FeatureView]:
        """``views`` with their stream transforms loaded from this repo's files (see ``ladle.repo.bind``)."""
        from ladle.repo.bind import bind_views

        return bind_views(views, self.repo_path)

    def get_feature_service(self, name: str) -> FeatureService:
        """The feature service called ``name``."""
        snapshot = self.snapshot()
        return self._describe(snapshot, snapshot.feature_service(name))  # type: ignore[no-any-return]

    def get_permission(self, name: str) -> Permission:
        """The permission called ``name``."""
        snapshot = self.snapshot()
        return self._describe(snapshot, snapshot.permission(name))  # type: ignore[no-any-return]

    def registry_dump(self) -> dict[str, Any]:
        """Everything the registry holds for the project (``ladle registry-dump``).

        With permissions registered the caller needs DESCRIBE on every object: a dump shows them all.
        """
        snapshot = self.snapshot()
        if snapshot.permissions:
            from ladle.security.permissions import Resource

            groups: list[Mapping[str, Any]] = [
                snapshot.entities, snapshot.data_sources, snapshot.feature_views,
                snapshot.feature_services, snapshot.permissions,
            ]  # fmt: skip
            resources = [Resource.of(obj) for group in groups for obj in group.values()]
            self._check(snapshot, AuthzedAction.DESCRIBE, resources, "registry_dump")
        return self.registry.dump()

    # -- reading ------------------------------------------------------------------------------
    def get_online_features(
        self,
        features: Sequence[str] | FeatureService,
        entity_rows: EntityRows,
        full_feature_names: bool = False,
    ) -> OnlineResponse:
        """Latest values for each entity row; ttl enforced (``OUTSIDE_MAX_AGE``); needs READ_ONLINE.

        With ``online_store: {type: remote}`` the whole request goes to the server (one round trip),
        which resolves it and checks the caller's permissions.
        """
        remote = self._remote
        if remote is not None:
            from ladle.retrieval.response import OnlineResponse

            return OnlineResponse(*remote.get_online_features(features, entity_rows, full_feature_names))
        principal = self.principal
        if self.enforcer.applies(principal):
            self.enforcer.check_read(
                self.snapshot(), principal, AuthzedAction.READ_ONLINE, features,
                event="get_online_features", source=self.request_source,
            )  # fmt: skip
        response = self._online.get_online_features(features, entity_rows, full_feature_names)
        if isinstance(features, FeatureService | str):  # a service (or its name): docs/feature-logging.md
            name = features if isinstance(features, str) else features.name
            self.feature_logger.log(self.snapshot(), name, response)
        return response

    async def get_online_features_async(
        self,
        features: Sequence[str] | FeatureService,
        entity_rows: EntityRows,
        full_feature_names: bool = False,
    ) -> OnlineResponse:
        """:meth:`get_online_features` for asyncio code: truly non-blocking against a ``remote`` online
        store (httpx's async client); embedded stores run the read in a worker thread."""
        remote = self._remote
        if remote is not None:
            from ladle.retrieval.response import OnlineResponse

            return OnlineResponse(*await remote.get_online_features_async(features, entity_rows, full_feature_names))
        import asyncio

        return await asyncio.to_thread(self.get_online_features, features, entity_rows, full_feature_names)

    async def push_async(
        self,
        push_source_name: str,
        df: pd.DataFrame | pa.Table | Mapping[str, Sequence[Any]],
        to: PushMode = "online",
    ) -> int | None:
        """:meth:`push` for asyncio code (remote store: an async ``POST /push``, which returns None;
        embedded: a worker thread, which returns the rows written online)."""
        remote = self._remote
        if remote is not None:
            await remote.push_async(push_source_name, push_columns(df), to)
            return None
        import asyncio

        return await asyncio.to_thread(self.push, push_source_name, df, to)

    def retrieve_online_documents(self, *args: Any, **kwargs: Any) -> OnlineResponse:
        """Feast's vector search: not supported (see docs/remote.md, "Vector search"); always raises
        :class:`~ladle.errors.UnsupportedFeatureError`."""
        from ladle.errors import UnsupportedFeatureError

        raise UnsupportedFeatureError(
            "retrieve_online_documents (vector search) is not supported: none of Ladle's online stores has a "
            "vector index on this deployment (Redis lacks RediSearch; SQLite has no sqlite-vec); see docs/remote.md"
        )

    def _token(self) -> str | None:
        """The bearer token remote stores send (``credential``, LADLE_AUTH_TOKEN, the ``auth:`` client keys)."""
        from ladle.security.credentials import client_token

        return client_token(self.config.auth, self._credential)

    @cached_property
    def _remote(self) -> RemoteOnlineStore | None:
        """The online store when it is ``remote`` (requests are forwarded whole), else None."""
        if getattr(self.config.online_store, "type", None) != "remote":
            return None
        from ladle.online.remote.store import RemoteOnlineStore

        store = self.online_store
        assert isinstance(store, RemoteOnlineStore)
        store.token_source = self._token
        return store

    def get_historical_features(
        self,
        entity_df: pd.DataFrame | pa.Table | str | Path,
        features: Sequence[str] | FeatureService | None = None,
        full_feature_names: bool = False,
        feature_service: FeatureService | str | None = None,
        as_of: AsOf | None = None,
    ) -> RetrievalJob:
        """Point-in-time-correct training data for ``entity_df``.

        ``as_of`` takes the training set from the data as it was: an instant, or the snapshot ids
        a retrieval read before (``job.snapshots``); Iceberg only (docs/offline.md, "Time travel").
        """
        from ladle.retrieval.historical import historical_job

        if getattr(self.config.offline_store, "type", None) == "remote":  # the server joins and checks the caller
            return self._remote_offline(entity_df, features, feature_service, full_feature_names)
        if features is None:
            if feature_service is None:
                raise ConfigError("pass features=[...] or feature_service=...")
            features = (
                feature_service
                if isinstance(feature_service, FeatureService)
                else self.snapshot().feature_service(feature_service)
            )
        snapshot = self.snapshot()
        self.enforcer.check_read(
            snapshot, self.principal, AuthzedAction.READ_OFFLINE, features,
            event="get_historical_features", source=self.request_source,
        )  # fmt: skip
        offline = self.offline_store
        if self._ray is not None:
            from ladle.materialize.ray_retrieval import RayOfflineStore

            offline = RayOfflineStore(offline, self._ray)
        from ladle.monitor.lineage_jobs import retrieval_job

        job = historical_job(
            snapshot, offline, entity_df, features, full_feature_names, bind=self.bind_views, as_of=as_of
        )
        job = retrieval_job(self, job, features, full_feature_names)
        refs = (
            [f"{p.view_name}:{f}" for p in features.projections for f in p.features]
            if isinstance(features, FeatureService)
            else list(features)
        )
        keys = sorted({k for v in snapshot.feature_views.values() for k in v.join_keys})
        service = features.name if isinstance(features, FeatureService) else None
        # for create_saved_dataset; by identity, dropped with the job (some jobs are unhashable dataclasses)
        self._job_requests[id(job)] = (refs, full_feature_names, keys, service)
        weakref.finalize(job, self._job_requests.pop, id(job), None)
        return job

    @cached_property
    def _job_requests(self) -> dict[int, tuple[list[str], bool, list[str], str | None]]:
        return {}

    def _remote_offline(
        self,
        entity_df: pd.DataFrame | pa.Table | str | Path,
        features: Sequence[str] | FeatureService | None,
        feature_service: FeatureService | str | None,
        full_feature_names: bool,
    ) -> RetrievalJob:
        from ladle.offline.remote.store import RemoteOfflineStore

        store = self.offline_store
        assert isinstance(store, RemoteOfflineStore)
        store.token_source = self._token
        wanted = features if features is not None else feature_service
        if wanted is None:
            raise ConfigError("pass features=[...] or feature_service=...")
        from ladle.retrieval.historical import entity_table

        return store.get_historical_features(entity_table(entity_df), wanted, full_feature_names)

    def _audited(
        self,
        event: str,
        actions: Iterable[str],
        resources: Callable[[], Sequence[str]],
        work: Callable[[], T],
        principal: Principal | None = None,
        source: str | None = None,
        rows: Callable[[T], int | None] | None = None,
    ) -> T:
        from ladle.security import audit

        caller = principal or self.principal
        via = source or self.request_source
        if rows is None:
            return audit.audited(event, caller, actions, resources, work, source=via, project=self.project)
        return audit.audited(event, caller, actions, resources, work, source=via, project=self.project, rows=rows)

    def close(self) -> None:
        """Release connections held by the stores and stop the registry's refresh thread."""
        if "lineage" in self.__dict__:
            self.lineage.flush(timeout=5)  # queued lineage events go out first (never more than 5 s)
        if "feature_logger" in self.__dict__:
            self.feature_logger.close()  # flushes queued logs while the stores are still open
        if "online_store" in self.__dict__:
            self.online_store.close()
        if "registry" in self.__dict__:
            self.registry.close()
        engine = self.__dict__.get("_ray")
        if engine is not None:
            engine.close()
