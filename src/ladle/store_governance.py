"""The façade's answers about what was served: feature logs, per-entity erasure, versions and A/B arms.

:class:`GovernanceMethods` is a base of :class:`~ladle.store.FeatureStore`; its methods are a few
lines each over ``ladle.monitor.feature_log*``, ``ladle.monitor.erase`` and
``ladle.retrieval.variants`` (docs/feature-logging.md; docs/versions.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

from ladle.definitions import AuthzedAction

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from ladle.definitions import FeatureService, FeatureView
    from ladle.monitor.erase import ErasureReport
    from ladle.monitor.feature_log import FeatureLogger
    from ladle.registry.base import Kind, ObjectVersion, RegistrySnapshot
    from ladle.store_core import StoreCore as _Store


class GovernanceMethods:
    """Feature logs, erasure, object history and A/B splits (a base of ``FeatureStore``)."""

    def history(self: _Store, kind: Kind, name: str) -> Sequence[ObjectVersion]:
        """Every stored version of one object, oldest first (deletions included).

        With permissions registered the caller needs DESCRIBE on the object, judged by the tags of
        its last stored definition (so a deleted object stays as guarded as it was).
        """
        snapshot = self.snapshot()
        versions = self.registry.history(kind, name)
        if snapshot.permissions and versions:
            from ladle.security.permissions import Resource

            specs = [v.spec for v in versions if v.spec is not None]
            tags = (specs[-1].get("tags") or {}) if specs else {}
            resource = Resource(kind, name, tuple(sorted((str(k), str(v)) for k, v in tags.items())))
            self._check(snapshot, AuthzedAction.DESCRIBE, [resource], "history")
        return versions

    @cached_property
    def feature_logger(self: _Store) -> FeatureLogger:
        """Queues and flushes the logs of feature services that declare a ``logging_config``."""
        from ladle.monitor.feature_log import FeatureLogger

        return FeatureLogger(self.config)

    def get_feature_log(
        self: _Store, feature_service: str, start: datetime | str | None = None, end: datetime | str | None = None
    ) -> pa.Table:
        """The logged rows of a feature service with ``start <= log_time <= end`` (flushes first), as Arrow."""
        from ladle.monitor.feature_log_read import read_log

        self.feature_logger.flush()
        return read_log(self, feature_service, start, end)

    def erase_entity(self: _Store, keys: Mapping[str, Any], dry_run: bool = False) -> ErasureReport:
        """Remove every row of one entity (join key → value) from the online store, the offline
        store and the feature logs; ``dry_run`` only counts. See docs/feature-logging.md, "Erasure"."""
        from ladle.monitor.erase import erase_entity
        from ladle.security.permissions import Resource

        actions = [AuthzedAction.WRITE_ONLINE, AuthzedAction.WRITE_OFFLINE]
        touched: list[str] = []

        def authorize(snapshot: RegistrySnapshot, views: Sequence[FeatureView]) -> None:
            resources = [Resource.of(v) for v in views]
            touched.extend(r.ref for r in resources)
            if resources:
                self._check(snapshot, actions, resources, "erase")

        self.feature_logger.flush()
        return self._audited(
            "erase",
            [a.name for a in actions],
            lambda: touched,
            lambda: erase_entity(self, keys, dry_run=dry_run, authorize=authorize),
            rows=lambda report: report.total,
        )

    def assign_variants(self: _Store, feature_service: FeatureService | str, entity_df: pd.DataFrame) -> pd.Series:
        """The arm of each row of ``entity_df`` under a split (A/B) service, exactly as serving assigns it.

        Rebuilds an arm's training rows without the feature logs (docs/versions.md)::

            arms = store.assign_variants("price_ab", entity_df)
            store.get_historical_features(entity_df[arms == "treatment"],
                                          feature_service=store.variant_service("price_ab", "treatment"))
        """
        from ladle.retrieval.variants import assign_variants, require_split

        snapshot = self.snapshot()
        return assign_variants(self._online, snapshot, require_split(snapshot, feature_service), entity_df)

    def variant_service(self: _Store, feature_service: FeatureService | str, arm: str) -> FeatureService:
        """The feature service one arm of a split serves (a pinned arm's stored version)."""
        from ladle.retrieval.variants import arm_definition, require_split

        snapshot = self.snapshot()
        return arm_definition(snapshot, require_split(snapshot, feature_service), arm)
