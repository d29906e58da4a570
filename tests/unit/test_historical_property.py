"""Point-in-time retrieval on random data, checked against a brute-force scan written here.

The reference does not share code with the SQL: for every entity row and view it scans every
source row, keeps those with equal keys, ``event <= row time`` and (ttl > 0) ``event >= row time -
ttl``, then the latest event time and, among those, the latest created time (a missing created
time loses). When several rows are still tied, any of them is a correct answer.

Data is drawn to make the hard cases common: few keys and few distinct seconds (duplicate event
times, equal event times with different or missing created times), rows outside the ttl,
entities without rows, three views (one with a composite key, one without a created column)
with different ttls, entity times written in mixed time zones (and naive = UTC), and several
Parquet timestamp encodings of the sources.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ladle import Entity, FeatureView, Field, FileSource, Float64, ValueType
from ladle.config import RepoConfig
from ladle.offline.duckdb import DuckDBOfflineStore, DuckDBOfflineStoreConfig
from ladle.registry.base import RegistrySnapshot
from ladle.retrieval.historical import historical_job

BASE = datetime(2024, 3, 10, 6, 0, tzinfo=UTC)  # near a US DST change, on purpose
ZONES = [None, UTC, ZoneInfo("America/New_York"), ZoneInfo("Asia/Kolkata"), timezone(timedelta(hours=5, minutes=45))]
ENCODINGS = [
    pa.timestamp("us", tz="UTC"),
    pa.timestamp("ns"),
    pa.timestamp("ms", tz="America/New_York"),
    pa.timestamp("s", tz="Asia/Tokyo"),
]

market = Entity(name="market", join_keys=["market_id"], value_type=ValueType.INT64)
commodity = Entity(name="commodity", join_keys=["code"], value_type=ValueType.STRING)


@dataclass(frozen=True)
class Row:
    """A source row: key values, event and created second offsets, the feature value."""

    keys: tuple[object, ...]
    event: int
    created: int | None
    value: float


@dataclass(frozen=True)
class ViewCase:
    name: str
    join_keys: tuple[str, ...]
    has_created: bool
    ttl: int  # seconds; 0 = no limit
    rows: tuple[Row, ...]


def rows_strategy(join_keys: tuple[str, ...], has_created: bool) -> st.SearchStrategy[tuple[Row, ...]]:
    key_values = {"market_id": st.integers(0, 3), "code": st.sampled_from(["x", "y"])}
    row = st.tuples(
        st.tuples(*(key_values[k] for k in join_keys)),
        st.integers(0, 40),
        st.one_of(st.none(), st.integers(0, 4)) if has_created else st.none(),
    )
    return st.lists(row, max_size=30).map(
        lambda raw: tuple(Row(k, e, (e + c) if c is not None else None, float(i)) for i, (k, e, c) in enumerate(raw))
    )


def view_case(name: str, join_keys: tuple[str, ...], has_created: bool) -> st.SearchStrategy[ViewCase]:
    return st.builds(
        ViewCase,
        st.just(name),
        st.just(join_keys),
        st.just(has_created),
        st.sampled_from([0, 3, 10, 25]),
        rows_strategy(join_keys, has_created),
    )


entity_rows = st.lists(
    st.tuples(st.integers(0, 4), st.sampled_from(["x", "y", "z"]), st.integers(-5, 50), st.sampled_from(ZONES)),
    min_size=1,
    max_size=25,
)


def instant(seconds: int) -> datetime:
    return BASE + timedelta(seconds=seconds)


def expected(case: ViewCase, keys: tuple[object, ...], t: int) -> set[float | None]:
    """Every acceptable value for one entity row, by brute force."""
    candidates = [
        r for r in case.rows if r.keys == keys and r.event <= t and (case.ttl == 0 or r.event >= t - case.ttl)
    ]
    if not candidates:
        return {None}
    latest = max(r.event for r in candidates)
    top = [r for r in candidates if r.event == latest]
    if case.has_created:
        created = [r.created for r in top if r.created is not None]
        best = max(created) if created else None
        top = [r for r in top if r.created == best]
    return {r.value for r in top}


def write_source(case: ViewCase, directory: Path, encoding: pa.DataType) -> FeatureView:
    columns: dict[str, pa.Array] = {}
    for i, key in enumerate(case.join_keys):
        columns[key] = pa.array([r.keys[i] for r in case.rows], pa.int64() if key == "market_id" else pa.string())
    stamps = pa.array([instant(r.event) for r in case.rows], pa.timestamp("us", tz="UTC"))
    columns["ts"] = stamps.cast(encoding)
    if case.has_created:
        created = [instant(r.created) if r.created is not None else None for r in case.rows]
        columns["created"] = pa.array(created, pa.timestamp("us", tz="UTC"))
    columns["val"] = pa.array([r.value for r in case.rows], pa.float64())
    pq.write_table(pa.table(columns), directory / f"{case.name}.parquet")
    entities = [market if k == "market_id" else commodity for k in case.join_keys]
    return FeatureView(
        name=case.name,
        entities=entities,
        ttl=timedelta(seconds=case.ttl),
        schema=[Field(name="val", dtype=Float64)],
        source=FileSource(
            path=f"{case.name}.parquet",
            timestamp_field="ts",
            created_timestamp_column="created" if case.has_created else "",
        ),
    )


def entity_frame(rows: list[tuple[int, str, int, object]]) -> pd.DataFrame:
    stamps = []
    for _, _, t, zone in rows:
        moment = instant(t)
        stamps.append(moment.replace(tzinfo=None) if zone is None else moment.astimezone(zone))  # type: ignore[arg-type]
    return pd.DataFrame(
        {
            "row_id": range(len(rows)),
            "market_id": [r[0] for r in rows],
            "event_timestamp": pd.Series(stamps, dtype=object),
            "code": [r[1] for r in rows],
        }
    )


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    a=view_case("by_market", ("market_id",), True),
    b=view_case("by_pair", ("market_id", "code"), True),
    c=view_case("by_code", ("code",), False),
    rows=entity_rows,
    encoding=st.sampled_from(ENCODINGS),
    order=st.permutations(["by_market", "by_pair", "by_code"]),
)
def test_matches_brute_force(
    a: ViewCase,
    b: ViewCase,
    c: ViewCase,
    rows: list[tuple[int, str, int, object]],
    encoding: pa.DataType,
    order: list[str],
) -> None:
    cases = {case.name: case for case in (a, b, c)}
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        views = {name: write_source(case, directory, encoding) for name, case in cases.items()}
        snapshot = RegistrySnapshot(
            project="prop",
            version=1,
            entities={"market": market, "commodity": commodity},
            feature_views=views,
        )
        store = DuckDBOfflineStore(
            RepoConfig(project="prop", offline_store=DuckDBOfflineStoreConfig(threads=2), repo_path=directory)
        )
        refs = [f"{name}:val" for name in order]
        out = historical_job(snapshot, store, entity_frame(rows), refs, full_feature_names=True).to_arrow()

    assert out.column_names == ["row_id", "market_id", "event_timestamp", "code", *(f"{n}__val" for n in order)]
    assert out.column("row_id").to_pylist() == list(range(len(rows)))
    assert out.column("event_timestamp").to_pylist() == [instant(r[2]) for r in rows]
    for name, case in cases.items():
        got = out.column(f"{name}__val").to_pylist()
        for i, (market_id, code, t, _) in enumerate(rows):
            keys = tuple(market_id if k == "market_id" else code for k in case.join_keys)
            assert got[i] in expected(case, keys, t), (name, i, rows[i], case)
