"""Done-when: the commodity repo written for Feast 0.67 (``tests/e2e/feast_repo``, ``from feast import ...``)
applies, materializes and serves with Ladle, with no edits (embedded stores, real Parquet files)."""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from ladle import FeatureStore
from ladle.cli.main import cli
from ladle.server.rest import create_app

with warnings.catch_warnings():  # starlette asks for httpx2 here; the plain httpx client is what we have
    warnings.filterwarnings("ignore", message=".*httpx2")
    from starlette.testclient import TestClient

FEAST_REPO = Path(__file__).resolve().parents[1] / "e2e" / "feast_repo"
NOW = datetime.now(UTC).replace(microsecond=0)
EVENT = NOW - timedelta(hours=1)


def _write(repo: Path, folder: str, columns: dict[str, list[object]], times: list[datetime] | None = None) -> None:
    n = len(next(iter(columns.values())))
    stamps = times or [EVENT] * n
    extra = {"created": stamps} if times is None else {}
    table = pa.table({**columns, "event_timestamp": stamps, **extra})
    target = repo / "data" / "offline" / folder
    target.mkdir(parents=True)
    pq.write_table(table, target / "part-0.parquet")


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("feast_written") / "repo"
    shutil.copytree(FEAST_REPO, path)
    _write(
        path,
        "commodity_prices",
        {
            "commodity_code": ["crude_oil_wti", "brent"],
            "current_price": [71.5, 75.25],
            "price_change_24h": [0.5, -0.25],
            "ma_7d": [70.0, 74.0],
            "simulated": [False, False],
        },
    )
    _write(
        path,
        "economic",
        {"country_code": ["US"], "gdp_growth": [2.1], "inflation_rate": [3.2], "interest_rate": [5.0]},
    )
    _write(path, "weather", {"location_id": ["JFK"], "temperature_avg": [12.5], "storm_index": [0.1]})
    ticks = {"commodity_code": ["brent", "brent", "brent"], "price": [74.0, 76.0, 75.0]}
    _write(path, "commodity_ticks", ticks, [EVENT - timedelta(hours=3), EVENT - timedelta(hours=2), EVENT])
    runner = CliRunner()
    applied = runner.invoke(cli, ["-c", str(path), "apply"])
    assert applied.exit_code == 0, applied.output
    start, end = (EVENT - timedelta(days=1)).isoformat(), NOW.isoformat()
    done = runner.invoke(cli, ["-c", str(path), "materialize", start, end])
    assert done.exit_code == 0, done.output
    return path


@pytest.fixture(scope="module")
def store(repo: Path) -> Iterator[FeatureStore]:
    store = FeatureStore(repo_path=repo)
    yield store
    store.close()


ROWS = [{"commodity_code": "crude_oil_wti", "country_code": "US", "location_id": "JFK"}]


def test_the_feature_service_serves_through_the_sdk(store: FeatureStore) -> None:
    service = store.get_feature_service("price_model_v1")
    values = store.get_online_features(service, ROWS).to_dict()
    assert values["current_price"] == [71.5]
    assert values["gdp_growth"] == [2.1]
    assert values["storm_index"] == [0.1]
    assert "interest_rate" not in values  # the service's projection leaves it out


def test_the_same_answers_come_over_feast_rest(store: FeatureStore) -> None:
    body = {
        "feature_service": "price_model_v1",
        "entities": {"commodity_code": ["brent", "gold"], "country_code": ["US", "US"], "location_id": ["JFK", "SEA"]},
    }
    with TestClient(create_app(store)) as client:
        response = client.post("/get-online-features", json=body)
    assert response.status_code == 200, response.text
    payload = response.json()
    names = payload["metadata"]["feature_names"]
    result = dict(zip(names, payload["results"], strict=True))
    assert result["current_price"]["values"] == [75.25, None]
    assert result["current_price"]["statuses"] == ["PRESENT", "NOT_FOUND"]
    assert result["temperature_avg"]["values"] == [12.5, None]


def test_the_stream_view_written_for_feast_serves_its_aggregates(store: FeatureStore) -> None:
    features = ["commodity_price_stream:price_mean_24h", "commodity_price_stream:price_max_24h"]
    values = store.get_online_features(features, [{"commodity_code": "brent"}]).to_dict()
    assert values["price_mean_24h"] == [75.0]
    assert values["price_max_24h"] == [76.0]


def test_the_registry_holds_what_the_feast_repo_declared(store: FeatureStore) -> None:
    view = store.get_feature_view("commodity_price_features")
    assert view.ttl == timedelta(days=3)
    assert view.owner == "market-data@commodity-analytics"
    assert view.tags == {"domain": "markets", "live": "simulated"}
    assert [f.name for f in view.features] == ["current_price", "price_change_24h", "ma_7d", "simulated"]
    country = store.get_entity("country")
    assert country.join_key == "country_code"
