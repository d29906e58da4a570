"""Stream feature views through the FeatureStore and the CLI, on the embedded stores.

A feature repo (a Python file on disk, so transforms are bound from it) declares stream views over
a Kafka source whose batch source holds raw ticks. Historical retrieval and materialization must
give exactly the rows ``compute`` gives over the whole history (computed here separately, and
joined by a brute-force point-in-time scan written in this file).
"""

from __future__ import annotations

import itertools
import json
import re
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner, Result

from ladle import FeatureStore, StreamFeatureView
from ladle.aggregation.batch import compute
from ladle.cli.main import cli
from ladle.errors import DefinitionError
from ladle.repo import load_repo
from ladle.repo.bind import bind_view
from streaming.reference import close

NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
T0 = NOW - timedelta(hours=5)
CODES = ["CL", "GC", "NG"]

REPO = """
from datetime import timedelta

import pandas as pd

from ladle import Aggregation, Entity, Field, FileSource, Float64, Int64, JsonFormat, KafkaSource
from ladle import StreamFeatureView, ValueType

commodity = Entity(name="commodity", join_keys=["code"], value_type=ValueType.STRING)
ticks = KafkaSource(
    name="ticks",
    kafka_bootstrap_servers="127.0.0.1:9092",
    topic="commodity-ticks",
    timestamp_field="event_timestamp",
    message_format=JsonFormat("code string, event_timestamp timestamp, price double, volume bigint"),
    batch_source=FileSource(name="ticks_history", path="data/ticks/", timestamp_field="event_timestamp"),
)


def cents(df: pd.DataFrame) -> pd.DataFrame:
    return df.assign(price_cents=df["price"] * 100)


def spread(df: pd.DataFrame) -> pd.DataFrame:
    return df.assign(spread=df["high_1h"] - df["low_1h"])


price_stream = StreamFeatureView(
    name="price_stream",
    source=ticks,
    entities=[commodity],
    ttl=timedelta(hours=2),
    aggregations=[
        Aggregation(column="price_cents", function="last", time_window=timedelta(hours=1), name="last_cents"),
        Aggregation(column="price", function="max", time_window=timedelta(hours=1), name="high_1h"),
        Aggregation(column="price", function="min", time_window=timedelta(hours=1), name="low_1h"),
        Aggregation(column="volume", function="sum", time_window=timedelta(minutes=30), name="volume_30m"),
        Aggregation(column="volume", function="count", time_window=timedelta(minutes=30), name="ticks_30m"),
    ],
    udf=cents,
    derive=spread,
    schema=[
        Field(name="last_cents", dtype=Float64),
        Field(name="high_1h", dtype=Float64),
        Field(name="low_1h", dtype=Float64),
        Field(name="volume_30m", dtype=Float64),
        Field(name="ticks_30m", dtype=Int64),
        Field(name="spread", dtype=Float64),
    ],
)

hourly = StreamFeatureView(
    name="hourly",
    source=ticks,
    entities=[commodity],
    ttl=timedelta(0),
    aggregations=[
        Aggregation(column="price", function="mean", time_window=timedelta(hours=2),
                    slide_interval=timedelta(hours=1), name="mean_2h"),
        Aggregation(column="price", function="stddev", time_window=timedelta(hours=1),
                    slide_interval=timedelta(hours=1), name="sd_1h"),
    ],
)

raw_ticks = StreamFeatureView(name="raw_ticks", source=ticks, entities=[commodity], ttl=timedelta(0))
"""

YAML = """\
project: streams
registry: {path: data/registry.db, cache_mode: sync}
online_store: {type: sqlite, path: data/online.db}
offline_store: {type: duckdb}
"""


def write_events(repo: Path) -> pa.Table:
    """Ticks over five hours: three codes, out of order, some delivered twice, some prices missing."""
    rng = np.random.default_rng(7)
    n = 600
    seconds = rng.integers(0, 5 * 3600, n)
    codes = rng.choice(CODES, n)
    prices = np.round(rng.uniform(50, 150, n), 2)
    table = pa.table(
        {
            "code": pa.array(codes),
            "event_timestamp": pa.array(
                [T0 + timedelta(seconds=int(s)) for s in seconds], pa.timestamp("us", tz="UTC")
            ),
            "price": pa.array([None if i % 17 == 0 else float(p) for i, p in enumerate(prices)], pa.float64()),
            "volume": pa.array(rng.integers(1, 100, n), pa.int64()),
        }
    )
    sparse = pa.table(  # a code with two ticks only: a row near the ttl's edge whose window reaches back
        {
            "code": ["SP", "SP"],
            "event_timestamp": pa.array(
                [T0 + timedelta(minutes=60), T0 + timedelta(minutes=100)], table.schema[1].type
            ),
            "price": [10.0, 20.0],
            "volume": pa.array([1, 2], pa.int64()),
        }
    )
    table = pa.concat_tables([table, table.slice(0, 40), sparse])  # some events delivered twice
    (repo / "data" / "ticks").mkdir(parents=True, exist_ok=True)
    half = table.num_rows // 2
    pq.write_table(table.slice(0, half), repo / "data" / "ticks" / "part-0.parquet")
    # another file, timestamps stored naive in milliseconds: read as UTC
    rest = table.slice(half)
    rest = rest.set_column(1, "event_timestamp", rest.column(1).cast(pa.timestamp("ms")))
    pq.write_table(rest, repo / "data" / "ticks" / "part-1.parquet")
    return table


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / "data").mkdir(parents=True)
    (root / "streams.py").write_text(REPO)
    (root / "feature_store.yaml").write_text(YAML)
    return root


@pytest.fixture
def store(repo: Path) -> Iterator[FeatureStore]:
    events = write_events(repo)
    fs = FeatureStore(repo_path=repo)
    fs.apply(load_repo(repo), partial=False)
    fs.events = events  # type: ignore[attr-defined]
    yield fs
    fs.close()
    fs.registry.close()


def computed(store: FeatureStore, name: str) -> list[dict[str, Any]]:
    """The view's rows over the whole history, by compute with the registry's view bound from the repo."""
    view = bind_view(store.get_feature_view(name), store.repo_path)
    assert isinstance(view, StreamFeatureView)
    return compute(view, store.events).to_pylist()  # type: ignore[attr-defined]


def as_of(rows: list[dict[str, Any]], code: str, at: datetime, ttl: timedelta) -> dict[str, Any] | None:
    """Brute force: the newest row of ``code`` with ``at - ttl <= t <= at`` (no lower bound for ttl 0)."""
    hits = [
        r
        for r in rows
        if r["code"] == code and r["event_timestamp"] <= at and (not ttl or r["event_timestamp"] >= at - ttl)
    ]
    return max(hits, key=lambda r: r["event_timestamp"]) if hits else None


def entity_rows() -> pd.DataFrame:
    times = [T0 + timedelta(minutes=m) for m in (-30, 0, 7, 45, 61, 130, 200, 219, 299, 300, 420)]
    return pd.DataFrame([{"code": c, "event_timestamp": t} for c in [*CODES, "SP", "XX"] for t in times])


@pytest.mark.parametrize("late_only", [False, True], ids=["all-rows", "late-rows"])
@pytest.mark.parametrize("name", ["price_stream", "hourly"])
def test_historical_retrieval_equals_compute_point_in_time(store: FeatureStore, name: str, late_only: bool) -> None:
    view = store.get_stream_feature_view(name)
    rows = computed(store, name)
    assert len(rows) >= 3 * 5
    entities = entity_rows()
    if late_only:  # the earliest entity row minus the ttl falls among the events: windows need look-back
        entities = entities[entities["event_timestamp"] >= T0 + timedelta(minutes=200)].reset_index(drop=True)
    refs = [f"{name}:{f}" for f in view.feature_names]
    got = store.get_historical_features(entities, refs).to_df()
    assert len(got) == len(entities)
    matched = 0
    for _, row in got.iterrows():
        want = as_of(rows, row["code"], row["event_timestamp"].to_pydatetime(), view.ttl)
        matched += want is not None
        for f in view.feature_names:
            expected = None if want is None else want[f]
            assert close(None if pd.isna(row[f]) else row[f], expected), (row["code"], row["event_timestamp"], f)
    assert matched >= 9


def test_full_feature_names_and_a_feature_service_style_selection(store: FeatureStore) -> None:
    entities = entity_rows().head(12)
    got = store.get_historical_features(entities, ["price_stream:spread", "hourly:mean_2h"], full_feature_names=True)
    assert list(got.to_df().columns) == ["code", "event_timestamp", "price_stream__spread", "hourly__mean_2h"]


def test_a_view_without_transforms_reads_the_events(store: FeatureStore) -> None:
    view = store.get_stream_feature_view("raw_ticks")
    assert view.feature_names == ["price", "volume"]  # the Kafka columns and keys are not features
    got = store.get_historical_features(entity_rows().head(10), ["raw_ticks:volume"]).to_df()
    assert got["volume"].notna().sum() > 0


def test_materialize_writes_the_newest_computed_row_per_key(store: FeatureStore) -> None:
    start, end = T0 + timedelta(hours=3), NOW
    results = store.materialize(start, end, ["price_stream"])
    assert results[0].rows_written == len(CODES)
    rows = [r for r in computed(store, "price_stream") if start <= r["event_timestamp"] <= end]
    online = store.get_online_features(
        [f"price_stream:{f}" for f in ("last_cents", "spread", "ticks_30m")], [{"code": c} for c in CODES]
    ).to_dict()
    for i, code in enumerate(CODES):
        newest = max((r for r in rows if r["code"] == code), key=lambda r: r["event_timestamp"])
        for f in ("last_cents", "spread", "ticks_30m"):
            assert close(online[f][i], newest[f]), (code, f)


def test_incremental_materialization_computes_windows_behind_the_watermark(store: FeatureStore) -> None:
    store.materialize_incremental(T0 + timedelta(hours=4), ["price_stream"])
    store.materialize_incremental(NOW, ["price_stream"])  # from the watermark: windows reach back before it
    rows = computed(store, "price_stream")
    online = store.get_online_features(["price_stream:high_1h"], [{"code": c} for c in CODES]).to_dict()
    for i, code in enumerate(CODES):
        newest = max((r for r in rows if r["code"] == code), key=lambda r: r["event_timestamp"])
        assert close(online["high_1h"][i], newest["high_1h"])


def test_a_changed_udf_must_be_applied_first(store: FeatureStore, repo: Path) -> None:
    path = repo / "streams.py"
    path.write_text(path.read_text().replace('df["price"] * 100', 'df["price"] * 1000'))
    with pytest.raises(DefinitionError, match=r"cents in the feature repo differs .*run 'ladle apply'"):
        store.get_historical_features(entity_rows(), ["price_stream:last_cents"])
    with pytest.raises(DefinitionError, match="run 'ladle apply'"):
        store.materialize(T0, NOW, ["price_stream"])
    # a view without transforms needs nothing from the repo
    assert store.get_historical_features(entity_rows(), ["hourly:mean_2h"]).to_df()["mean_2h"].notna().any()


def test_a_view_the_repo_no_longer_declares_cannot_run_its_udf(store: FeatureStore, repo: Path) -> None:
    path = repo / "streams.py"
    path.write_text(path.read_text().replace('name="price_stream"', 'name="prices_renamed"'))
    with pytest.raises(DefinitionError, match="does not declare it"):
        store.get_historical_features(entity_rows(), ["price_stream:spread"])


def test_sdk_lists_and_gets_stream_views(store: FeatureStore) -> None:
    assert [v.name for v in store.list_stream_feature_views()] == ["hourly", "price_stream", "raw_ticks"]
    view = store.get_stream_feature_view("price_stream")
    assert view.udf is not None and view.udf.fn is None  # read from the registry: unbound
    declared = {v.name: v for v in load_repo(store.repo_path).feature_views}
    assert (
        view.to_spec()
        == declared["price_stream"].resolve(store.offline_store.source_schema(view.batch_source)).to_spec()
    )
    assert {v.name for v in store.list_feature_views()} >= {"price_stream", "hourly"}


# -- the CLI ------------------------------------------------------------------------------------


def run(repo: Path, *args: str, code: int = 0) -> Result:
    result = CliRunner().invoke(cli, ["-c", str(repo), *args])
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    return result


def one_error_line(result: Result) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    return lines[0]


def edit(repo: Path, old: str, new: str) -> None:
    path = repo / "streams.py"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def test_cli_lists_and_describes_stream_views(repo: Path) -> None:
    write_events(repo)
    run(repo, "apply")
    listed = json.loads(run(repo, "stream-feature-views", "list", "-o", "json").output)
    assert sorted(v["name"] for v in listed) == ["hourly", "price_stream", "raw_ticks"]
    described = json.loads(run(repo, "stream-feature-views", "describe", "hourly", "-o", "json").output)
    assert described["stream"]["topic"] == "commodity-ticks"
    assert described["stream"]["aggregations"][0] == {
        "column": "price", "function": "mean", "window": "2h", "slide": "1h", "name": "mean_2h"
    }  # fmt: skip
    text = run(repo, "stream-feature-views", "describe", "price_stream").output
    assert "udf: cents" in text and "derive: spread" in text and "last_cents" in text
    views = json.loads(run(repo, "feature-views", "list", "-o", "json").output)
    assert {v["name"] for v in views} == {"hourly", "price_stream", "raw_ticks"}
    assert re.search(r"hourly\s*│\s*stream\s*│", run(repo, "feature-views", "list").output)
    missing = one_error_line(run(repo, "stream-feature-views", "describe", "nope", code=1))
    assert "does not exist" in missing
    run(repo, "teardown")
    assert "no stream feature views" in run(repo, "stream-feature-views", "list").output


def test_cli_plan_shows_a_udf_change_and_apply_versions_it(repo: Path) -> None:
    write_events(repo)
    run(repo, "apply")
    assert "no changes" in run(repo, "plan").output.lower()
    edit(repo, 'df["price"] * 100', 'df["price"] * 100.0')
    planned = run(repo, "plan").output
    assert "price_stream" in planned and "udf" in planned
    run(repo, "apply")
    versions = json.loads(run(repo, "feature-views", "versions", "price_stream", "-o", "json").output)
    assert [v["version"] for v in versions] == [1, 2]
    assert "* 100.0" in versions[1]["spec"]["stream"]["udf"]["source"]


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ('column="volume", function="sum"', 'column="code", function="sum"', "'code' is String, not a number"),
        ('column="volume", function="sum"', 'column="nope", function="sum"', "'nope' is not a column"),
        ('df["high_1h"] - df["low_1h"])', 'df["high_1h"] - df["low_1h"]).drop(columns=["spread"])', "'spread'"),
        ("return df.assign(price_cents", "return df.drop(columns=['code']).assign(price_cents", "drops the columns"),
        ('df["price"] * 100', 'df["missing_column"] * 100', "fails on an empty frame"),
    ],
    ids=["string-column", "missing-column", "derive-misses-a-feature", "udf-drops-key", "udf-fails"],
)
def test_cli_apply_errors_are_one_line_and_change_nothing(repo: Path, old: str, new: str, expected: str) -> None:
    write_events(repo)
    edit(repo, old, new)
    error = one_error_line(run(repo, "apply", code=1))
    assert expected in error
    assert json.loads(run(repo, "registry-dump").output)["version"] == 0


def test_an_empty_batch_source_validates_against_the_declared_format(repo: Path) -> None:
    (repo / "data" / "ticks").mkdir(parents=True)
    run(repo, "apply")
    assert "price_stream" in run(repo, "stream-feature-views", "list").output
    edit(repo, 'JsonFormat("code string, event_timestamp timestamp, price double, volume bigint")', "JsonFormat()")
    assert "DataSourceError" in one_error_line(run(repo, "plan", code=1))


def test_push_source_stream_views_refuse_aggregations(repo: Path) -> None:
    edit(
        repo,
        'raw_ticks = StreamFeatureView(name="raw_ticks", source=ticks,',
        textwrap.dedent(
            """\
            from ladle import PushSource
            pushed = PushSource(name="pushed", batch_source=ticks.batch_source)
            raw_ticks = StreamFeatureView(name="raw_ticks", source=pushed, aggregations=price_stream.aggregations,"""
        ),
    )
    error = one_error_line(run(repo, "apply", code=1))
    assert "need a KafkaSource" in error


@pytest.mark.parametrize("name", ["price_stream", "hourly"])
def test_offline_pulls_over_narrow_ranges_look_back_for_whole_windows(store: FeatureStore, name: str) -> None:
    view = bind_view(store.get_feature_view(name), store.repo_path)
    rows = computed(store, name)
    for minutes in (50, 95, 180, 241):
        start = T0 + timedelta(minutes=minutes)
        end = start + timedelta(minutes=70)
        inside = [r for r in rows if start <= r["event_timestamp"] <= end]
        pulled = pa.Table.from_batches(list(store.offline_store.pull_all(view, start, end))).to_pylist()
        assert len(pulled) == len(inside)
        by_ident = {(r["code"], r["event_timestamp"]): r for r in inside}
        for got in pulled:
            want = by_ident[(got["code"], got["event_timestamp"])]
            assert all(close(got[f], want[f]) for f in view.feature_names), (got, want)
        latest = pa.Table.from_batches(list(store.offline_store.pull_latest(view, start, end))).to_pylist()
        for got in latest:
            newest = max((r for r in inside if r["code"] == got["code"]), key=lambda r: r["event_timestamp"])
            assert got["event_timestamp"] == newest["event_timestamp"]
            assert all(close(got[f], newest[f]) for f in view.feature_names)
        assert {r["code"] for r in latest} == {r["code"] for r in inside}


def test_cli_materialize_backfills_a_stream_view_from_its_definitions(repo: Path) -> None:
    events = write_events(repo)
    run(repo, "apply")
    out = run(repo, "materialize", (NOW - timedelta(hours=2)).isoformat(), NOW.isoformat(), "--views", "price_stream")
    assert "price_stream" in out.output
    fs = FeatureStore(repo_path=repo)
    try:
        view = bind_view(fs.get_feature_view("price_stream"), repo)
        assert isinstance(view, StreamFeatureView)
        rows = compute(view, events).to_pylist()
        online = fs.get_online_features(["price_stream:volume_30m"], [{"code": c} for c in CODES]).to_dict()
        for i, code in enumerate(CODES):
            newest = max((r for r in rows if r["code"] == code), key=lambda r: r["event_timestamp"])
            assert close(online["volume_30m"][i], newest["volume_30m"])
    finally:
        fs.close()
        fs.registry.close()


@pytest.mark.parametrize("name", ["price_stream", "hourly", "raw_ticks"])
def test_range_pulls_of_computed_views_split_the_newest_rows(store: FeatureStore, name: str) -> None:
    """Entity-hash range pulls (materialization in chunks): with aggregations and no udf the raw
    events are filtered by the keys' hash before computing; either way the ranges together give the
    newest computed row of each entity, each in exactly one range."""
    from ladle.offline.hashing import BUCKETS, HashRange

    view = bind_view(store.get_feature_view(name), store.repo_path)
    rows = computed(store, name)
    start, end = T0 + timedelta(minutes=95), T0 + timedelta(minutes=280)
    inside = [r for r in rows if start <= r["event_timestamp"] <= end]
    cuts = [0, 1000, 2048, 3000, BUCKETS]
    got: dict[str, dict[str, Any]] = {}
    for lo, hi in itertools.pairwise(cuts):
        part = HashRange(BUCKETS, lo, hi)
        for row in pa.Table.from_batches(
            list(store.offline_store.pull_latest_range(view, start, end, part, 2))
        ).to_pylist():
            assert row["code"] not in got, f"{row['code']} in two ranges"
            got[row["code"]] = row
    assert set(got) == {r["code"] for r in inside} and len(got) >= 3
    for code, row in got.items():
        newest = max((r for r in inside if r["code"] == code), key=lambda r: r["event_timestamp"])
        assert row["event_timestamp"] == newest["event_timestamp"]
        assert all(close(row[f], newest[f]) for f in view.feature_names), (row, newest)
