"""Stream feature views with aggregations and a udf, computed offline from raw events in an Iceberg table.

The repo and the brute-force checks are those of ``tests/unit/test_stream_store.py`` (DuckDB
store): the rows ``compute`` gives over the whole history, joined point in time by a scan
written there; only the offline store differs (the raw events are the Iceberg table
``streams.ticks_history``).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from pyiceberg.table.name_mapping import create_mapping_from_schema

from ladle import FeatureStore, FeatureView
from ladle.repo import load_repo
from ladle.repo.bind import bind_view
from streaming.reference import close
from unit.test_stream_store import CODES, REPO, T0, as_of, computed, entity_rows, write_events

YAML = """\
project: streams
registry: {path: data/registry.db, cache_mode: sync}
online_store: {type: sqlite, path: data/online.db}
offline_store: {type: iceberg, namespace: streams, threads: 1}
"""


@pytest.fixture(params=["direct", "arrow"])
def store(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[FeatureStore]:
    root = tmp_path / "repo"
    (root / "data").mkdir(parents=True)
    (root / "streams.py").write_text(REPO)
    (root / "feature_store.yaml").write_text(YAML)
    events = write_events(root)  # also writes Parquet files, which the Iceberg store does not read
    fs = FeatureStore(repo_path=root)
    objects = load_repo(root)
    view = next(v for v in objects.feature_views if v.name == "raw_ticks")
    assert isinstance(view, FeatureView)
    fs.offline_store.append(view.batch_source, events.slice(0, 300))
    fs.offline_store.append(view.batch_source, events.slice(300))
    if request.param == "arrow":  # files that may lack field ids: read through pyiceberg
        table = fs.offline_store._table(view.batch_source)  # type: ignore[attr-defined]
        with table.transaction() as tx:
            tx.set_properties(
                {"schema.name-mapping.default": create_mapping_from_schema(table.schema()).model_dump_json()}
            )
    fs.apply(objects, partial=False)
    fs.events = events  # type: ignore[attr-defined]
    fs.read_path = request.param  # type: ignore[attr-defined]
    yield fs
    fs.close()
    fs.registry.close()


@pytest.mark.parametrize("late_only", [False, True], ids=["all-rows", "late-rows"])
@pytest.mark.parametrize("name", ["price_stream", "hourly"])
def test_historical_retrieval_equals_compute_point_in_time(store: FeatureStore, name: str, late_only: bool) -> None:
    view = store.get_stream_feature_view(name)
    rows = computed(store, name)
    entities = entity_rows()
    if late_only:
        entities = entities[entities["event_timestamp"] >= T0 + timedelta(minutes=200)].reset_index(drop=True)
    got = store.get_historical_features(entities, [f"{name}:{f}" for f in view.feature_names]).to_df()
    assert len(got) == len(entities)
    matched = 0
    for _, row in got.iterrows():
        want = as_of(rows, row["code"], row["event_timestamp"].to_pydatetime(), view.ttl)
        matched += want is not None
        for f in view.feature_names:
            expected = None if want is None else want[f]
            assert close(None if pd.isna(row[f]) else row[f], expected), (row["code"], row["event_timestamp"], f)
    assert matched >= 9
    assert store.offline_store.last_read_paths["ticks_history"] == store.read_path  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", ["price_stream", "hourly"])
def test_offline_pulls_look_back_for_whole_windows(store: FeatureStore, name: str) -> None:
    view = bind_view(store.get_feature_view(name), store.repo_path)
    rows = computed(store, name)
    for minutes in (50, 180, 241):
        start = T0 + timedelta(minutes=minutes)
        end = start + timedelta(minutes=70)
        inside = {(r["code"], r["event_timestamp"]): r for r in rows if start <= r["event_timestamp"] <= end}
        pulled = pa.Table.from_batches(list(store.offline_store.pull_all(view, start, end))).to_pylist()
        assert len(pulled) == len(inside)
        for got in pulled:
            want = inside[(got["code"], got["event_timestamp"])]
            assert all(close(got[f], want[f]) for f in view.feature_names), (got, want)


def test_materialize_writes_the_newest_computed_row_per_key(store: FeatureStore) -> None:
    start = T0 + timedelta(hours=3)
    end = T0 + timedelta(hours=5)
    store.materialize(start, end, ["price_stream"])
    rows = [r for r in computed(store, "price_stream") if start <= r["event_timestamp"] <= end]
    online = store.get_online_features(["price_stream:high_1h"], [{"code": c} for c in CODES]).to_dict()
    for i, code in enumerate(CODES):
        newest = max((r for r in rows if r["code"] == code), key=lambda r: r["event_timestamp"])
        assert close(online["high_1h"][i], newest["high_1h"]), code
