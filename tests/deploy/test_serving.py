"""ladle.serving without Ray: feature reads for a batch of requests (SDK and feature server), the model
loader, the linear model; and Ray Serve's app_builder arguments (with Ray installed)."""

from __future__ import annotations

import math
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import yaml

from deploy.manifests import IN_CI, ROOT
from ladle.errors import ConfigError, RequestError
from ladle.serving.features import ServerFeatures, StoreFeatures
from ladle.serving.linear import LinearModel, load_linear_model
from ladle.serving.scoring import Scorer, load_model
from unit.server_repo import PRICES, build_repo

pytestmark = [
    pytest.mark.deploy,
    pytest.mark.filterwarnings("ignore::pydantic.warnings.PydanticDeprecatedSince20"),  # Ray's own models
]
MODEL = LinearModel(("current_price",), (2.0,), 1.0)
REQUESTS = [
    {"commodity_code": "crude_oil_wti", "station_id": 1},
    "not a row",
    {"commodity_code": "brent", "station_id": 2},
    {"commodity_code": "gold"},  # no station_id: the service joins on both keys
    {"commodity_code": "silver", "station_id": 1},  # no online row
]


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("serving_repo")
    build_repo(path).store.close()
    return path


def check_answers(answers: list[object]) -> None:
    crude, junk, brent, gold, silver = answers
    assert crude == {
        "prediction": 1 + 2 * PRICES["crude_oil_wti"][0],
        "features": {"current_price": 78.25, "name": "JFK"},
    }
    assert brent == {"prediction": 1 + 2 * PRICES["brent"][0], "features": {"current_price": 82.5, "name": "SEA"}}
    assert silver == {"prediction": None, "features": {"current_price": None, "name": "JFK"}}
    assert isinstance(junk, RequestError) and "join keys" in str(junk)
    assert isinstance(gold, RequestError) and "station_id" in str(gold)


def test_one_read_per_batch_through_the_sdk(repo: Path) -> None:
    scorer = Scorer(StoreFeatures("price_model", repo_path=repo), MODEL)
    check_answers(scorer.score(REQUESTS))
    # One read for the three rows with both join keys; the gold row's read failed (not counted).
    assert scorer.stats() == {"reads": 1, "rows": 3, "largest_read": 3}
    scorer.reader.close()


def test_an_unknown_feature_service_fails_at_start(repo: Path) -> None:
    with pytest.raises(Exception, match="price_modell"):
        StoreFeatures("price_modell", repo_path=repo)


@pytest.fixture(scope="module")
def server_url(repo: Path) -> Iterator[str]:
    """``ladle serve`` on the repo, one worker, free ports (REST only)."""
    ladle = Path(sys.executable).parent / "ladle"
    process = subprocess.Popen(
        [str(ladle), "-c", str(repo), "serve", "--port", "0", "--no-grpc", "--graceful-timeout", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    found: list[str] = []
    ready = threading.Event()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            match = re.search(r"REST (http://[^\s,]+)", line)
            if match and not found:
                found.append(match.group(1))
                ready.set()

    threading.Thread(target=pump, daemon=True).start()
    try:
        assert ready.wait(60), "ladle serve did not start"
        yield found[0]
    finally:
        process.terminate()
        process.wait(30)


@pytest.mark.slow
def test_one_read_per_batch_through_the_feature_server(server_url: str) -> None:
    scorer = Scorer(ServerFeatures("price_model", server_url=server_url), MODEL)
    check_answers(scorer.score(REQUESTS))
    assert scorer.stats() == {"reads": 1, "rows": 3, "largest_read": 3}


def test_model_loaders(tmp_path: Path) -> None:
    MODEL.save(tmp_path / "m.json")
    assert load_model("ladle.serving.linear:load_linear_model", {"path": tmp_path / "m.json"}) == MODEL
    assert load_model(lambda: MODEL) == MODEL
    for bad in ("ladle.serving.linear", "ladle.serving.linear:nothing", "no_such_module:load"):
        with pytest.raises(ConfigError):
            load_model(bad)
    with pytest.raises(ConfigError, match="no predict"):
        load_model(lambda: 42)
    (tmp_path / "broken.json").write_text('{"inputs": ["a"]}')
    with pytest.raises(ConfigError, match=r"broken\.json"):
        load_linear_model(tmp_path / "broken.json")


def test_linear_model_by_hand() -> None:
    model = LinearModel(("a", "b"), (0.5, -2.0), 3.0)
    frame = pd.DataFrame({"a": [2.0, None], "b": [1.0, 1.0], "other": ["x", "y"]})
    first, second = model.predict(frame)
    assert first == 3.0 + 0.5 * 2.0 - 2.0 * 1.0 and math.isnan(second)
    with pytest.raises(ConfigError):
        LinearModel(("a",), (1.0, 2.0))
    with pytest.raises(RequestError, match="'c'"):
        LinearModel(("c",), (1.0,)).predict(frame)


def _require_ray() -> None:
    try:
        import ray.serve  # noqa: F401
    except ImportError:
        reason = "RAY MISSING: ray[serve] is not installed (pip install 'ladle[serve]'; it is in the dev extra)"
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)


def test_app_builder_takes_the_documented_config() -> None:
    _require_ray()
    from ray.serve import Application

    from ladle.serving.ray_serve import app_builder

    text = (ROOT / "docs" / "deploy.md").read_text()
    block = re.search(r"```yaml\n(# serve_config\.yaml.*?)```", text, re.S)
    assert block, "docs/deploy.md has no serve_config.yaml block"
    (application,) = yaml.safe_load(block.group(1))["applications"]
    assert application["import_path"] == "ladle.serving.ray_serve:app_builder"
    assert isinstance(app_builder(application["args"]), Application)
    with pytest.raises(ConfigError, match="unknown key 'replicas'"):
        app_builder({**application["args"], "replicas": "2"})
    with pytest.raises(ConfigError, match="'feature_service' is required"):
        app_builder({"model_loader": "x:y"})
