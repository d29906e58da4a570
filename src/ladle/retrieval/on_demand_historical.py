"""Historical retrieval with on-demand feature views: the ODFVs run over the training frame.

The store's point-in-time join reads every feature the request and its ODFVs need (under full
names); :class:`OnDemandRetrievalJob` then runs each ODFV once over the whole frame (request fields
come from the entity frame's columns), names the columns as the request asked and drops the inputs
that were not requested.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ladle.definitions.refs import resolve
from ladle.retrieval.on_demand import input_refs, split_refs, transform_frame

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from ladle.definitions import FeatureView
    from ladle.definitions.saved_dataset import ValidationReference
    from ladle.offline.base import AsOf, OfflineStore, RetrievalJob
    from ladle.registry.base import RegistrySnapshot


class OnDemandRetrievalJob:
    """A retrieval job whose result gains ODFV outputs (see the module docstring)."""

    def __init__(
        self,
        base: RetrievalJob,
        snapshot: RegistrySnapshot,
        plain: list[str],
        wanted: dict[str, list[str]],
        full_feature_names: bool,
    ) -> None:
        self.base = base
        #: The base job's source snapshot ids (Iceberg), for ``as_of``.
        self.snapshots: Mapping[str, int] = base.snapshots
        self._snapshot = snapshot
        self._plain = plain
        self._wanted = wanted
        self._full = full_feature_names

    @property
    def sql(self) -> str:
        """The base job's query."""
        return self.base.sql

    def to_df(self, validation_reference: ValidationReference | None = None) -> pd.DataFrame:
        """Run the join, then the ODFVs; entity columns, requested features, ODFV outputs."""
        frame = self.base.to_df()
        read_columns = {f"{v}__{f}" for r in self._read_refs() for v, _, f in [r.partition(":")]}
        entity_columns = [c for c in frame.columns if c not in read_columns]
        frame = transform_frame(frame, self._snapshot, self._wanted, self._full)
        renamed: dict[str, str] = {}
        if self._plain:
            for sel in resolve(self._snapshot, self._plain, self._full):
                for feature, out in zip(sel.features, sel.output_names(self._full), strict=True):
                    renamed[f"{sel.view.name}__{feature}"] = out
        outputs = [f"{n}__{o}" if self._full else o for n, outs in self._wanted.items() for o in outs]
        kept = frame[entity_columns + list(renamed) + outputs].rename(columns=renamed)
        from ladle.offline.validation import check

        return check(kept, validation_reference)

    def to_arrow(self) -> pa.Table:
        """The same as :meth:`to_df`, as an Arrow table."""
        import pyarrow as pa

        return pa.Table.from_pandas(self.to_df(), preserve_index=False)

    def to_parquet(self, path: str | Path) -> None:
        """Write the result to a Parquet file."""
        import pyarrow.parquet as pq

        pq.write_table(self.to_arrow(), Path(path))

    def _read_refs(self) -> list[str]:
        return _read_refs(self._snapshot, self._plain, self._wanted)


def _read_refs(snapshot: RegistrySnapshot, plain: list[str], wanted: dict[str, list[str]]) -> list[str]:
    expanded = [f"{s.view.name}:{f}" for s in resolve(snapshot, plain, True) for f in s.features] if plain else []
    return list(dict.fromkeys([*expanded, *input_refs(snapshot, wanted)]))


def on_demand_job(
    snapshot: RegistrySnapshot,
    offline_store: OfflineStore,
    entity_df: Any,
    features: list[str],
    full_feature_names: bool,
    base_job: Callable[..., RetrievalJob],
    bind: Callable[[Iterable[FeatureView]], list[FeatureView]] | None,
    as_of: AsOf | None,
) -> OnDemandRetrievalJob:
    """The job of a request naming ODFVs (``base_job`` is :func:`ladle.retrieval.historical.historical_job`)."""
    plain, wanted = split_refs(snapshot, features)
    read_refs = _read_refs(snapshot, plain, wanted)
    base = base_job(snapshot, offline_store, entity_df, read_refs, True, bind, as_of)
    return OnDemandRetrievalJob(base, snapshot, plain, wanted, full_feature_names)
