"""The façade's writes: materialization, pushes and direct online writes, each checked and audited.

:class:`WriteMethods` is a base of :class:`~ladle.store.FeatureStore`; its methods are a few lines
each over ``ladle.materialize``, ``ladle.retrieval.push`` and ``ladle.retrieval.on_demand_write``
(docs/online.md, "push and write_to_online_store" and "Materialization").
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ladle.definitions import AuthzedAction
from ladle.errors import RequestError

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from ladle.materialize.local import ViewResult
    from ladle.retrieval.push import PushMode
    from ladle.security.principal import Principal
    from ladle.store_core import StoreCore as _Store


class WriteMethods:
    """Materialization, pushes and direct online writes (a base of ``FeatureStore``).

    Servers pass the caller they authenticated (``principal``) and where the call came from
    (``source``: rest / grpc); SDK callers leave both out (``store.principal``, "sdk").
    """

    def materialize(
        self: _Store,
        start_date: datetime | str,
        end_date: datetime | str,
        feature_views: Sequence[str] | None = None,
        progress: bool = False,
        *,
        principal: Principal | None = None,
        source: str | None = None,
    ) -> list[ViewResult]:
        """Load the newest row per entity in ``[start_date, end_date]`` into the online store (WRITE_ONLINE)."""
        materializer = self._materializer()
        return _materializing(
            self,
            feature_views,
            lambda: materializer.materialize(start_date, end_date, feature_views, progress=progress),
            principal,
            source,
        )

    def materialize_incremental(
        self: _Store,
        end_date: datetime | str,
        feature_views: Sequence[str] | None = None,
        progress: bool = False,
        *,
        principal: Principal | None = None,
        source: str | None = None,
    ) -> list[ViewResult]:
        """Materialize from each view's watermark (or ``end - ttl``) up to ``end_date`` (WRITE_ONLINE)."""
        materializer = self._materializer()
        return _materializing(
            self,
            feature_views,
            lambda: materializer.materialize_incremental(end_date, feature_views, progress=progress),
            principal,
            source,
        )

    def push(
        self: _Store,
        push_source_name: str,
        df: pd.DataFrame | pa.Table | Mapping[str, Sequence[Any]],
        to: PushMode = "online",
        *,
        principal: Principal | None = None,
        source: str | None = None,
    ) -> int:
        """Write fresh rows to every view fed by the push source; returns rows written online.

        Needs WRITE_ONLINE, WRITE_OFFLINE or both (by ``to``) on each of those views; rows with event
        times beyond ``write_safety.max_future_skew_seconds`` refuse the whole batch.
        """
        remote = self._remote
        if remote is not None:  # the server checks the rows and the caller
            remote.push(push_source_name, push_columns(df), to)
            return 0
        from ladle.retrieval.push import push
        from ladle.security.permissions import PUSH_ACTIONS, Resource

        actions = PUSH_ACTIONS.get(to)
        if actions is None:
            raise RequestError(f"push 'to' must be one of {', '.join(PUSH_ACTIONS)}, got {to!r}")
        snapshot = self.snapshot()
        snapshot.push_source(push_source_name)
        resources = [Resource.of(v) for v in snapshot.views_fed_by(push_source_name)]
        self._check(snapshot, actions, resources, "push", principal, source)
        skew = self.config.write_safety.max_future_skew_seconds
        from ladle.monitor.lineage_jobs import push_work

        return self._audited(
            "push",
            [a.name for a in actions],
            lambda: [r.ref for r in resources],
            push_work(
                self,
                push_source_name,
                to,
                lambda: push(snapshot, self.offline_store, self.online_store, push_source_name, df, to, skew),
            ),
            principal,
            source,
        )

    def write_to_online_store(
        self: _Store,
        feature_view_name: str,
        df: pd.DataFrame | pa.Table | Mapping[str, Sequence[Any]],
        *,
        principal: Principal | None = None,
        source: str | None = None,
    ) -> int:
        """Write rows straight into one view's online storage (validated against its schema; WRITE_ONLINE)."""
        from ladle.retrieval.push import write_to_online_store
        from ladle.security.permissions import Resource

        snapshot = self.snapshot()
        resources = [Resource.of(snapshot.feature_view(feature_view_name))]
        self._check(snapshot, AuthzedAction.WRITE_ONLINE, resources, "write_to_online_store", principal, source)
        skew = self.config.write_safety.max_future_skew_seconds
        return self._audited(
            "write_to_online_store",
            ["WRITE_ONLINE"],
            lambda: [r.ref for r in resources],
            lambda: write_to_online_store(snapshot, self.online_store, feature_view_name, df, skew),
            principal,
            source,
        )


def _materializing(
    store: _Store,
    names: Sequence[str] | None,
    work: Callable[[], list[ViewResult]],
    principal: Principal | None,
    source: str | None,
) -> list[ViewResult]:
    from ladle.security.permissions import Resource

    snapshot = store.snapshot()
    if names is None:
        views = [v for v in snapshot.feature_views.values() if v.online]
    else:
        views = [snapshot.feature_view(n) for n in names]
    resources = [Resource.of(v) for v in views]
    store._check(snapshot, AuthzedAction.WRITE_ONLINE, resources, "materialize", principal, source)

    def work_and_derive() -> list[ViewResult]:
        results = work()
        from ladle.retrieval.on_demand_write import materialize_derived, writing_odfvs

        if writing_odfvs(snapshot):  # write_to_online_store ODFVs of the views just loaded
            for r in results:
                if not r.skipped:
                    materialize_derived(snapshot, store.offline_store, store.online_store, [r.view], r.start, r.end)
        return results

    from ladle.monitor.lineage_jobs import materialize_work

    return store._audited(
        "materialize",
        ["WRITE_ONLINE"],
        lambda: [r.ref for r in resources],
        materialize_work(store, views, work_and_derive),
        principal,
        source,
        rows=lambda results: sum(r.rows_written for r in results),
    )


def push_columns(df: pd.DataFrame | pa.Table | Mapping[str, Sequence[Any]]) -> Mapping[str, Sequence[Any]]:
    """Rows to push as ``column -> values`` (what the REST API takes)."""
    import pyarrow as pa

    if isinstance(df, Mapping):
        return df
    if isinstance(df, pa.Table):
        columns: Mapping[str, Sequence[Any]] = df.to_pydict()
        return columns
    return {str(k): list(v) for k, v in df.to_dict(orient="list").items()}
