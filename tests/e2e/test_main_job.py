"""The README's main job, end to end on the embedded defaults: ingest, apply, materialize, query.

Runs the real CLI on a copy of feature_repo with the committed real data, then asks the platform's
exact query and checks the answers against the raw data, computed independently here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from ladle import FeatureStore, FieldStatus

ROOT = Path(__file__).resolve().parents[2]


def ladle(repo: Path, *args: str) -> str:
    env = {**os.environ, "LADLE_DATA_DIR": str(ROOT / "data")}
    done = subprocess.run(
        [sys.executable, "-m", "ladle", "-c", str(repo), *args], capture_output=True, text=True, env=env, check=False
    )
    assert done.returncode == 0, f"ladle {' '.join(args)}\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("main_job") / "feature_repo"
    shutil.copytree(ROOT / "feature_repo", path, ignore=shutil.ignore_patterns("data"))
    ladle(path, "ingest")
    ladle(path, "apply")
    ladle(path, "materialize-incremental", "now")
    return path


def last_real_wti_close_of_2013() -> float:
    wti = pq.read_table(ROOT / "data" / "wti_daily.parquet")
    in_2013 = wti.filter(pc.equal(pc.year(wti.column("event_timestamp")), 2013))
    return float(in_2013.column("price")[-1].as_py())


@pytest.mark.slow
def test_the_platforms_query_answers_with_real_values(repo: Path) -> None:
    store = FeatureStore(repo_path=repo)
    response = store.get_online_features(
        features=[
            "commodity_price_features:current_price",
            "commodity_price_features:price_change_24h",
            "commodity_price_features:volatility_7d",
        ],
        entity_rows=pd.DataFrame({"commodity_code": ["crude_oil_wti", "natural_gas"]}),
    )
    result = response.to_dict()
    assert result["commodity_code"] == ["crude_oil_wti", "natural_gas"]
    assert result["current_price"][0] == pytest.approx(last_real_wti_close_of_2013())
    for name in ("current_price", "price_change_24h", "volatility_7d"):
        assert all(isinstance(v, float) for v in result[name]), (name, result[name])
    assert set(response.statuses_dict()["current_price"]) == {FieldStatus.PRESENT}
    store.close()


@pytest.mark.slow
def test_a_bare_view_name_returns_every_feature_of_the_view(repo: Path) -> None:
    store = FeatureStore(repo_path=repo)
    result = store.get_online_features(
        features=["commodity_price_features"], entity_rows=[{"commodity_code": "crude_oil_wti"}]
    ).to_dict()
    features = store.get_feature_view("commodity_price_features").feature_names
    assert len(features) == 8
    assert list(result) == ["commodity_code", *features]
    assert all(result[f][0] is not None for f in features)
    store.close()


@pytest.mark.slow
def test_economic_and_weather_views_are_fresh_online(repo: Path) -> None:
    store = FeatureStore(repo_path=repo)
    response = store.get_online_features(
        features="price_model_v1",
        entity_rows=[{"commodity_code": "crude_oil_wti", "country_code": "US", "location_id": "JFK"}],
    )
    statuses = response.statuses_dict()
    assert all(s == [FieldStatus.PRESENT] for n, s in statuses.items()), statuses
    ts = dict(zip(response.feature_names, response.event_timestamps, strict=True))
    newest = datetime.fromtimestamp(ts["temperature_avg"][0] / 1e6, UTC)
    assert (datetime.now(UTC) - newest).total_seconds() < 6 * 3600  # replayed to the current hour
    store.close()


@pytest.mark.slow
def test_ingest_is_idempotent(repo: Path) -> None:
    def rows() -> int:
        files = sorted((repo / "data" / "offline").rglob("*.parquet"))
        return sum(pq.read_metadata(f).num_rows for f in files)

    before = rows()
    ladle(repo, "ingest")
    assert rows() == before


@pytest.mark.slow
def test_the_server_answers_the_documented_curl_request(repo: Path) -> None:
    from starlette.testclient import TestClient

    from ladle.server.rest import create_app

    store = FeatureStore(repo_path=repo)
    body = {
        "features": ["commodity_price_features:current_price", "commodity_price_features:price_change_24h"],
        "entities": {"commodity_code": ["crude_oil_wti"]},
    }
    with TestClient(create_app(store)) as client:
        reply = client.post("/get-online-features", json=body)
    assert reply.status_code == 200, reply.text
    data = reply.json()
    assert data["metadata"]["feature_names"] == ["commodity_code", "current_price", "price_change_24h"]
    assert data["results"][0]["values"] == ["crude_oil_wti"]
    assert data["results"][1]["values"][0] == pytest.approx(last_real_wti_close_of_2013())
    assert data["results"][1]["statuses"] == ["PRESENT"]
    store.close()
