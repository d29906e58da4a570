"""Per-entity erasure (``ladle erase``, ``FeatureStore.erase_entity``): one entity's rows out of every store.

The entity is given as join key → value (``commodity_code=brent``; an entity's name works for its join
key). Several keys name a composite entity: a view is touched when its join keys include every given
key, and its rows with those values go whatever its other keys hold (erasing ``commodity_code=brent``
removes brent's rows of a (commodity, venue) view for every venue).

Everything is checked before anything is deleted (unknown keys, values of the wrong type, a backend
without the erasure capability): a bad argument changes nothing. Then, in this order, so a
materialization running meanwhile cannot copy a row back from a store not yet erased: each matching
view's offline source (Parquet files rewritten without the rows, an Iceberg row-level delete, a SQL
DELETE), each logged feature service's log, and each matching view's online rows. A key that exists
nowhere reports zeros.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ladle.config import RepoConfig
from ladle.definitions import DataSource, FeatureView, KafkaSource, PushSource
from ladle.definitions.refs import resolve
from ladle.errors import EntityKeyError
from ladle.monitor.feature_log import _source_of
from ladle.monitor.feature_log_table import LogLayout
from ladle.offline.base import OfflineStore, RowEraser
from ladle.online.base import EntityEraser, OnlineStore
from ladle.registry.base import RegistrySnapshot
from ladle.types import ValueType


class ErasureTarget(Protocol):
    """What erasure needs of a store (``FeatureStore`` has it)."""

    config: RepoConfig

    @property
    def project(self) -> str:
        """The project name."""
        ...

    @property
    def online_store(self) -> OnlineStore:
        """The online store."""
        ...

    @property
    def offline_store(self) -> OfflineStore:
        """The offline store."""
        ...

    def snapshot(self, allow_cache: bool = True) -> RegistrySnapshot:
        """The current definitions."""
        ...


@dataclass(frozen=True)
class Removal:
    """Rows of the entity removed (or, in a dry run, found) in one table."""

    store: str  # "offline", "feature_log" or "online"
    backend: str  # the store's configured type (duckdb, iceberg, mysql, sqlite, redis …)
    table: str  # the view (online), the source (offline) or the feature service (logs)
    rows: int


@dataclass
class ErasureReport:
    """What :func:`erase_entity` removed, per store and table."""

    keys: dict[str, Any]
    dry_run: bool
    removals: list[Removal] = field(default_factory=list)

    @property
    def total(self) -> int:
        """Rows removed (found, in a dry run) in every store."""
        return sum(r.rows for r in self.removals)

    def rows(self) -> list[dict[str, Any]]:
        """One dict per table, for tables and JSON."""
        return [
            {"store": r.store, "backend": r.backend, "table": r.table, "rows": r.rows, "dry_run": self.dry_run}
            for r in self.removals
        ]


def _batch(source: DataSource) -> DataSource:
    return source.batch_source if isinstance(source, PushSource | KafkaSource) else source


def _source_key(source: DataSource) -> tuple[str, str]:
    where = getattr(source, "path", "") or getattr(source, "table", "") or getattr(source, "query", "")
    return type(source).__name__, f"{getattr(source, 'database', '')}/{where}"


def _join_key_types(snapshot: RegistrySnapshot) -> dict[str, tuple[str, ValueType | None]]:
    """Join key → (entity name, declared type) over every entity of the project."""
    return {e.join_key: (e.name, e.value_type) for e in snapshot.entities.values()}


def _typed(join_key: str, value: Any, value_type: ValueType | None) -> Any:
    """``value`` (text from the CLI or a Python value) as the join key's type; EntityKeyError if it is not."""
    if value_type in (ValueType.INT64, ValueType.INT32):
        if isinstance(value, bool):
            raise EntityKeyError(f"join key '{join_key}' is {value_type.name}; got {value!r}")
        try:
            return int(value)
        except (TypeError, ValueError):
            raise EntityKeyError(f"join key '{join_key}' is {value_type.name}; {value!r} is not an integer") from None
    if value_type == ValueType.BYTES:
        return value.encode() if isinstance(value, str) else bytes(value)
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise EntityKeyError(f"join key '{join_key}': {value!r} is not a valid key value (text or an integer)")
    return value if value_type is None else str(value)


def resolve_keys(snapshot: RegistrySnapshot, given: Mapping[str, Any]) -> dict[str, Any]:
    """``given`` (join keys or entity names → values) as join key → typed value, checked."""
    if not given:
        raise EntityKeyError("no entity given: pass join_key=value (e.g. --entity commodity_code=brent)")
    known = _join_key_types(snapshot)
    by_entity = {entity: jk for jk, (entity, _) in known.items()}
    keys: dict[str, Any] = {}
    for name, value in given.items():
        join_key = name if name in known else by_entity.get(name)
        if join_key is None:
            raise EntityKeyError(
                f"'{name}' is neither a join key nor an entity of project '{snapshot.project}'; "
                f"join keys: {sorted(known)}"
            )
        if join_key in keys:
            raise EntityKeyError(f"join key '{join_key}' is given twice")
        keys[join_key] = _typed(join_key, value, known[join_key][1])
    return keys


def parse_entity_args(pairs: Sequence[str]) -> dict[str, str]:
    """``["commodity_code=brent", ...]`` → ``{"commodity_code": "brent"}``; EntityKeyError if malformed."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key or not value:
            raise EntityKeyError(f"entity {pair!r} must be written join_key=value")
        if key in out:
            raise EntityKeyError(f"join key '{key}' is given twice")
        out[key] = value
    return out


@dataclass(frozen=True)
class _Plan:
    views: list[FeatureView]
    sources: list[tuple[str, DataSource, dict[str, Any]]]  # (label, source, source column → value)
    logs: list[tuple[str, DataSource]]  # (service, log source)


def _plan(store: ErasureTarget, snapshot: RegistrySnapshot, keys: dict[str, Any]) -> _Plan:
    wanted = set(keys)
    views = [v for v in snapshot.feature_views.values() if wanted <= set(v.join_keys)]
    sources: dict[tuple[str, str], tuple[str, DataSource, dict[str, Any]]] = {}
    for view in views:
        batch = _batch(view.source)
        inverse = {dst: src for src, dst in batch.field_mapping.items()}
        columns = {inverse.get(k, k): v for k, v in keys.items()}
        sources.setdefault(_source_key(batch), (batch.name or view.name, batch, columns))
    logs = []
    for service in snapshot.feature_services.values():
        if service.logging_config is None:
            continue
        layout = LogLayout.of(resolve(snapshot, service, True))
        if wanted <= {name for name, _ in layout.keys}:
            logs.append((service.name, _source_of(store.config, service)))
    return _Plan(views, list(sources.values()), logs)


def erase_entity(
    store: ErasureTarget,
    given: Mapping[str, Any],
    dry_run: bool = False,
    authorize: Callable[[RegistrySnapshot, Sequence[FeatureView]], None] | None = None,
) -> ErasureReport:
    """Remove one entity's rows from the offline store, the feature logs and the online store (see the
    module docstring); with ``dry_run`` only count them. Nothing is deleted if an argument is bad or
    ``authorize`` (given the views that would be touched) raises."""
    snapshot = store.snapshot(allow_cache=False)
    keys = resolve_keys(snapshot, given)
    plan = _plan(store, snapshot, keys)
    if authorize is not None:
        authorize(snapshot, plan.views)
    offline, online = store.offline_store, store.online_store
    offline_kind = store.config.offline_store.type
    online_kind = store.config.online_store.type
    if (plan.sources or plan.logs) and not isinstance(offline, RowEraser):
        raise EntityKeyError(f"the {offline_kind} offline store cannot erase rows; nothing was deleted")
    if plan.views and not isinstance(online, EntityEraser):
        raise EntityKeyError(f"the {online_kind} online store cannot erase entities; nothing was deleted")
    report = ErasureReport(keys, dry_run)
    for label, source, columns in plan.sources:
        rows = offline.erase_rows(source, columns, dry_run)  # type: ignore[attr-defined]
        report.removals.append(Removal("offline", offline_kind, label, rows))
    for service, source in plan.logs:
        rows = offline.erase_rows(source, keys, dry_run)  # type: ignore[attr-defined]
        report.removals.append(Removal("feature_log", offline_kind, service, rows))
    for view in plan.views:
        if not view.online:
            continue
        rows = online.erase_entity(store.project, view, keys, dry_run)  # type: ignore[attr-defined]
        report.removals.append(Removal("online", online_kind, view.name, rows))
    return report
