"""Ray Serve serves the tutorial's model with features from the store, batching concurrent requests.

The repo is a copy of feature_repo on the real data (as tests/e2e/test_tutorial.py builds it:
``ingest``, ``apply``, ``feed``); the model is fitted as docs/tutorial.md fits it (OLS of the next
day's crude price move on six point-in-time features), on 2005-2009 to keep it small. Ray runs
locally on two CPUs with a 100 MB object store. Every answer is checked against the SDK's online
features for the same entity row fed to the same weights by hand.
"""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from deploy.manifests import IN_CI, ROOT
from ladle.cli.main import cli
from ladle.store import FeatureStore

pytestmark = [
    pytest.mark.ray,
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::pydantic.warnings.PydanticDeprecatedSince20"),  # Ray's own models
]

FEATURES = [
    "commodity_price_features:price_change_24h",
    "commodity_price_features:volatility_7d",
    "commodity_price_features:rsi_14d",
    "economic_features:gdp_growth",
    "economic_features:inflation_rate",
    "economic_features:interest_rate",
]
INPUTS = [name.split(":")[1] for name in FEATURES]
ROWS = [
    {"commodity_code": code, "country_code": "US", "location_id": station}
    for code in ("crude_oil_wti", "natural_gas")
    for station in ("JFK", "LGA", "EWR")
] * 2 + [{"commodity_code": "gold", "country_code": "US", "location_id": "JFK"}]  # gold: no rows at all


def require_ray() -> None:
    try:
        import ray  # noqa: F401
        from ray import serve  # noqa: F401
    except ImportError:
        reason = "RAY MISSING: ray[serve] is not installed (pip install 'ladle[serve]'; it is in the dev extra)"
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)


@dataclass
class Tutorial:
    repo: Path
    weights: np.ndarray  # intercept first, then one per input
    model_path: Path


@pytest.fixture(scope="module")
def tutorial(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tutorial]:
    require_ray()
    work = tmp_path_factory.mktemp("ray_tutorial")
    repo = work / "feature_repo"
    shutil.copytree(ROOT / "feature_repo", repo, ignore=shutil.ignore_patterns("data"))
    saved = os.environ.get("LADLE_DATA_DIR")
    os.environ["LADLE_DATA_DIR"] = str(ROOT / "data")
    try:
        for verb in ("ingest", "apply", "feed"):
            result = CliRunner().invoke(cli, ["-c", str(repo), verb], catch_exceptions=False)
            assert result.exit_code == 0, f"ladle {verb}\n{result.output}"
    finally:
        if saved is None:
            del os.environ["LADLE_DATA_DIR"]
        else:
            os.environ["LADLE_DATA_DIR"] = saved
    # docs/tutorial.md, sections 2 and 3, on 2005-2009.
    store = FeatureStore(repo_path=repo)
    days = pd.bdate_range("2005-01-03", "2009-10-30", tz="UTC") + pd.Timedelta(hours=20)
    entity_df = pd.DataFrame({"commodity_code": "crude_oil_wti", "country_code": "US", "event_timestamp": days})
    training = store.get_historical_features(
        entity_df=entity_df, features=[*FEATURES, "commodity_price_features:current_price"]
    ).to_df()
    later = entity_df.assign(event_timestamp=entity_df["event_timestamp"] + pd.offsets.BDay(1))
    future = store.get_historical_features(
        entity_df=later[["commodity_code", "event_timestamp"]], features=["commodity_price_features:current_price"]
    ).to_df()
    training["label"] = 100 * (future["current_price"].to_numpy() / training["current_price"].to_numpy() - 1)
    training = training.dropna()
    assert len(training) > 1000
    x = np.column_stack([np.ones(len(training)), training[INPUTS].to_numpy(dtype=float)])
    weights, *_ = np.linalg.lstsq(x, training["label"].to_numpy(), rcond=None)
    store.close()

    from ladle.serving.linear import LinearModel

    model_path = work / "price_model_v1.json"
    LinearModel(tuple(INPUTS), tuple(float(w) for w in weights[1:]), float(weights[0])).save(model_path)
    yield Tutorial(repo, weights, model_path)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Served:
    handle: Any
    url: str


@pytest.fixture(scope="module")
def served(tutorial: Tutorial) -> Iterator[Served]:
    import ray
    from ray import serve

    from ladle.serving.ray_serve import build_app

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(num_cpus=2, object_store_memory=100 * 1024 * 1024, include_dashboard=False, log_to_driver=False)
    try:
        port = _free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        app = build_app(
            "price_model_v1",
            "ladle.serving.linear:load_linear_model",
            {"path": str(tutorial.model_path)},
            repo_path=str(tutorial.repo),
            max_batch_size=16,
            batch_wait_timeout_s=0.5,
        )
        handle = serve.run(app, name="price_model", route_prefix="/price-model")
        yield Served(handle, f"http://127.0.0.1:{port}/price-model")
    finally:
        serve.shutdown()
        ray.shutdown()


def expected(tutorial: Tutorial, row: dict[str, str]) -> tuple[float | None, dict[str, Any]]:
    """The SDK's online features for ``row`` and the tutorial's prediction from them, by hand."""
    store = FeatureStore(repo_path=tutorial.repo)
    try:
        service = store.get_feature_service("price_model_v1")
        values = store.get_online_features(service, [row]).to_dict()
    finally:
        store.close()
    features = {name: column[0] for name, column in values.items() if name not in row}
    inputs = [features[name] for name in INPUTS]
    if any(v is None for v in inputs):
        return None, features
    return float(tutorial.weights[0] + np.dot(tutorial.weights[1:], np.array(inputs, dtype=float))), features


def test_concurrent_requests_get_the_sdk_features_fed_to_the_tutorial_model(tutorial: Tutorial, served: Served) -> None:
    before = served.handle.stats.remote().result()
    responses = [served.handle.predict.remote(row) for row in ROWS]  # all in flight at once
    answers = [r.result(timeout_s=120) for r in responses]
    after = served.handle.stats.remote().result()
    for row, answer in zip(ROWS, answers, strict=True):
        prediction, features = expected(tutorial, row)
        assert answer["features"] == features, row
        if prediction is None:
            assert answer["prediction"] is None, row
        else:
            assert answer["prediction"] == pytest.approx(prediction, rel=1e-9, abs=1e-12), row
    served_rows = [a for a in answers if a["prediction"] is not None]
    assert len(served_rows) == 12, "every WTI and natural gas row should have fresh (simulated) inputs"
    assert all(a["features"]["simulated"] is True for a in served_rows)
    assert answers[-1]["prediction"] is None  # gold: NOT_FOUND, no made-up prediction
    # Batching: the 13 concurrent requests took fewer feature reads than requests.
    reads = after["reads"] - before["reads"]
    assert after["rows"] - before["rows"] == len(ROWS)
    assert reads < len(ROWS) and after["largest_read"] > 1, (before, after)


def test_a_bad_request_fails_alone(tutorial: Tutorial, served: Served) -> None:
    good = served.handle.predict.remote(ROWS[0])
    bad = served.handle.predict.remote({"commodity_code": "crude_oil_wti"})  # no country_code, location_id
    assert good.result(timeout_s=120)["prediction"] == pytest.approx(expected(tutorial, ROWS[0])[0], rel=1e-9)
    with pytest.raises(Exception, match=r"country_code|location_id"):
        bad.result(timeout_s=120)


def test_http_answers_the_same(tutorial: Tutorial, served: Served) -> None:
    answer = httpx.post(served.url, json=ROWS[1], timeout=60)
    assert answer.status_code == 200, answer.text
    prediction, features = expected(tutorial, ROWS[1])
    assert answer.json()["features"] == features
    assert answer.json()["prediction"] == pytest.approx(prediction, rel=1e-9)
    refused = httpx.post(served.url, json=["not", "a", "row"], timeout=60)
    assert refused.status_code == 400 and "join keys" in refused.json()["error"]
