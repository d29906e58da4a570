"""The Iceberg store behind a FeatureStore and the CLI: apply, materialize, training sets, offline
pushes, ``ladle ingest`` (idempotent) and ``get-historical-features --as-of``."""

from __future__ import annotations

import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
from click.testing import CliRunner

from ladle import FeatureStore, FeatureView, Field, Float64, PushSource
from ladle.cli.main import cli

from .iceberg_support import commodity, day, entity, iceberg_config, price_rows, prices_source


def test_feature_store_on_iceberg(tmp_path: Path) -> None:
    config = iceberg_config(tmp_path)
    source = prices_source()
    push = PushSource(name="prices_push", batch_source=source)
    view = FeatureView(name="prices", source=push, entities=[commodity], schema=[Field(name="price", dtype=Float64)])
    store = FeatureStore(config=config)
    try:
        store.offline_store.append(source, price_rows(["A", "B", "A"], [0, 0, 1], [1.0, 2.0, 3.0]))
        store.apply([commodity, push, view])
        frame = entity(["A", "B", "A"], [0.5, 0.5, 1.5]).to_pandas()
        job = store.get_historical_features(entity_df=frame, features=["prices:price"])
        assert job.to_df()["price"].tolist() == [1.0, 2.0, 3.0]
        snapshots = job.snapshots  # type: ignore[attr-defined]
        store.materialize(day(0), day(2))
        online = store.get_online_features(features=["prices:price"], entity_rows=[{"code": "A"}, {"code": "B"}])
        assert online.to_dict()["price"] == [3.0, 2.0]
        # A push to the offline store is a new snapshot the next training set sees.
        pushed = pd.DataFrame({"code": ["B"], "event_ts": [day(1.2)], "price": [20.0]})
        store.push("prices_push", pushed, to="offline")
        again = store.get_historical_features(entity_df=frame, features=["prices:price"]).to_df()
        assert again["price"].tolist() == [1.0, 2.0, 3.0]  # no frame row is after B's push at 1.2 for B
        later = entity(["B"], [1.5]).to_pandas()
        assert store.get_historical_features(entity_df=later, features=["prices:price"]).to_df()["price"].tolist() == [
            20.0
        ]
        # The first training set, retaken on the snapshots it read, does not see the push.
        old = store.get_historical_features(entity_df=later, features=["prices:price"], as_of=snapshots).to_df()
        assert old["price"].tolist() == [2.0]
    finally:
        store.close()


REPO = """
from datetime import UTC, datetime, timedelta

import pyarrow as pa

from ladle import Entity, FeatureView, Field, FileSource, Float64, ValueType
from ladle.ingest import Ingestion

commodity = Entity(name="commodity", join_keys=["code"], value_type=ValueType.STRING)
source = FileSource(name="prices", path="data/prices/", timestamp_field="event_ts")
prices = FeatureView(name="prices", entities=[commodity], source=source, schema=[Field(name="price", dtype=Float64)])
T0 = datetime(2024, 1, 1, tzinfo=UTC)
OFFSET = {"value": 0.0}


def rows(window):
    ts = pa.array([T0 + timedelta(days=d) for d in range(5)], pa.timestamp("us", tz="UTC"))
    return pa.table({"code": ["wti"] * 5, "event_ts": ts, "price": [70.0 + d + OFFSET["value"] for d in range(5)]})


daily = Ingestion(name="daily", feature_view="prices", compute=rows)
"""


def repo(tmp_path: Path) -> Path:
    (tmp_path / "feature_store.yaml").write_text(
        textwrap.dedent(
            """\
            project: iceberg_cli
            registry: data/registry.db
            online_store: {type: sqlite, path: data/online.db}
            offline_store:
              type: iceberg
              namespace: cli
            """
        )
    )
    (tmp_path / "repo.py").write_text(textwrap.dedent(REPO))
    return tmp_path


def ladle(path: Path, *args: str) -> str:
    result = CliRunner().invoke(cli, ["-c", str(path), *args])
    assert result.exit_code == 0, result.output
    return result.output


def test_ingest_and_as_of_through_the_cli(tmp_path: Path) -> None:
    path = repo(tmp_path)
    ladle(path, "ingest", "daily")  # creates the table
    ladle(path, "apply")
    store = FeatureStore(repo_path=path)
    try:
        table = store.offline_store._table(prices_source())  # type: ignore[attr-defined]
        assert table.scan().to_arrow().num_rows == 5
        snapshots = len(table.snapshots())
        ladle(path, "ingest", "daily")  # the same window again: nothing added, no new snapshot
        table = store.offline_store._table(prices_source())  # type: ignore[attr-defined]
        assert table.scan().to_arrow().num_rows == 5 and len(table.snapshots()) == snapshots
        ladle(path, "ingest", "daily", "--start", "2024-01-03", "--end", "2024-01-04")
        table = store.offline_store._table(prices_source())  # type: ignore[attr-defined]
        assert table.scan().to_arrow().num_rows == 5
    finally:
        store.close()
    time.sleep(0.01)
    moment = datetime.now(UTC)
    time.sleep(0.01)
    # A correction of one day: the window is replaced by rows 100 higher.
    (path / "repo.py").write_text(textwrap.dedent(REPO).replace('{"value": 0.0}', '{"value": 100.0}'))
    ladle(path, "ingest", "daily", "--start", "2024-01-03", "--end", "2024-01-04")
    pd.DataFrame({"code": ["wti"] * 2, "event_timestamp": [day(2.5), day(3.5)]}).to_parquet(path / "entities.parquet")
    ladle(
        path,
        "get-historical-features",
        "-d",
        str(path / "entities.parquet"),
        "-f",
        "prices:price",
        "-o",
        str(path / "now.parquet"),
    )
    assert pq.read_table(path / "now.parquet").column("price").to_pylist() == [172.0, 73.0]
    ladle(
        path, "get-historical-features", "-d", str(path / "entities.parquet"), "-f", "prices:price",
        "-o", str(path / "then.parquet"), "--as-of", moment.isoformat(),
    )  # fmt: skip
    assert pq.read_table(path / "then.parquet").column("price").to_pylist() == [72.0, 73.0]


def test_as_of_on_the_cli_is_refused_by_the_parquet_store(tmp_path: Path) -> None:
    (tmp_path / "feature_store.yaml").write_text("project: p\nregistry: data/registry.db\n")
    (tmp_path / "repo.py").write_text(textwrap.dedent(REPO))
    pd.DataFrame({"code": ["wti"], "event_timestamp": [day(1)]}).to_parquet(tmp_path / "entities.parquet")
    ladle(tmp_path, "ingest", "daily")
    ladle(tmp_path, "apply")
    result = CliRunner().invoke(
        cli,
        ["-c", str(tmp_path), "get-historical-features", "-d", str(tmp_path / "entities.parquet"), "-f", "prices:price",
         "-o", "x.parquet", "--as-of", "2024-01-01T00:00:00Z"],
    )  # fmt: skip
    assert result.exit_code != 0 and "iceberg" in result.output
