"""What the façade's method groups use of the store: one protocol for all of them.

``FeatureStore`` (``ladle.store``) is built from method groups — :class:`~ladle.store_governance.
GovernanceMethods`, :class:`~ladle.store_records.RecordMethods`, :class:`~ladle.store_writes.
WriteMethods` — whose methods annotate ``self`` as :class:`StoreCore`: the store's services and its
check-and-audit helpers, which ``FeatureStore`` provides. Typing only; nothing here runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar

if TYPE_CHECKING:
    from ladle.config import RepoConfig
    from ladle.definitions import AuthzedAction
    from ladle.materialize.local import Materializer
    from ladle.monitor.feature_log import FeatureLogger
    from ladle.monitor.lineage import Lineage
    from ladle.offline.base import OfflineStore
    from ladle.online.base import OnlineStore
    from ladle.online.remote.store import RemoteOnlineStore
    from ladle.registry.base import Registry, RegistrySnapshot
    from ladle.retrieval.online import OnlineRetriever
    from ladle.security.permissions import Resource
    from ladle.security.principal import Principal

T = TypeVar("T")


class StoreCore(Protocol):
    """The store as its method groups see it."""

    config: RepoConfig
    repo_path: Path

    @property
    def project(self) -> str: ...

    @property
    def registry(self) -> Registry: ...

    @property
    def online_store(self) -> OnlineStore: ...

    @property
    def offline_store(self) -> OfflineStore: ...

    @property
    def feature_logger(self) -> FeatureLogger: ...

    @property
    def lineage(self) -> Lineage: ...

    @property
    def _online(self) -> OnlineRetriever: ...

    @property
    def _remote(self) -> RemoteOnlineStore | None: ...

    @property
    def _job_requests(self) -> dict[int, tuple[list[str], bool, list[str], str | None]]: ...

    def snapshot(self, allow_cache: bool = True) -> RegistrySnapshot: ...

    def _materializer(self) -> Materializer: ...

    def _check(
        self,
        snapshot: RegistrySnapshot,
        actions: AuthzedAction | Sequence[AuthzedAction],
        resources: Sequence[Resource],
        event: str,
        principal: Principal | None = None,
        source: str | None = None,
    ) -> None: ...

    def _audited(
        self,
        event: str,
        actions: Iterable[str],
        resources: Callable[[], Sequence[str]],
        work: Callable[[], T],
        principal: Principal | None = None,
        source: str | None = None,
        rows: Callable[[T], int | None] | None = None,
    ) -> T: ...
