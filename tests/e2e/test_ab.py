"""A/B splits end to end: a split feature service assigns each entity to an arm by a stable keyed hash,
close to its weights, the same in every process; the SDK, REST and gRPC say which arm served;
a pinned arm keeps its service version; each arm's training rows can be rebuilt.

Real embedded stores (SQLite registry and online store, Parquet + DuckDB offline): see ``unit.pins_repo``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from ladle import FeatureService, FeatureStore
from ladle.errors import DefinitionError, InvalidFeatureReferenceError, PinConflictError, RequestError
from ladle.server._proto.feast.serving import ServingService_pb2 as serving_pb
from ladle.server._proto.feast.serving import ServingService_pb2_grpc as serving_grpc
from ladle.server._proto.feast.types import Value_pb2 as value_pb
from ladle.server.rest import create_app
from ladle.types import FieldStatus
from unit.pins_repo import COMMODITY, ONLINE_PRICES, SOURCE_TIME, V1_PRICES, fill_online, prices_view, write_repo
from unit.test_pins import _grpc_channel

with warnings.catch_warnings():  # starlette asks for httpx2 here; the plain httpx client is what we have
    warnings.filterwarnings("ignore", message=".*httpx2")
    from starlette.testclient import TestClient

TESTS = Path(__file__).parent.parent


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """prices (v1) with online rows; model_a (price), model_b v1 (price, volume) then v2 (volume only);
    splits price_ab (50/50 model_a / model_b@v1), skewed (90/10) and three (50/30/20)."""
    path = tmp_path_factory.mktemp("ab_repo")
    store = write_repo(path)
    prices = prices_view("v1")
    model_a = FeatureService(name="model_a", features=[prices[["current_price"]]])
    model_b = FeatureService(name="model_b", features=[prices[["current_price", "volume"]]])
    store.apply([COMMODITY, prices, model_a, model_b])
    fill_online(store)
    store.apply([FeatureService(name="model_b", features=[prices[["volume"]]])])  # model_b v2
    splits = [
        FeatureService(name="price_ab", variants={"control": ("model_a", 0.5), "treatment": ("model_b@v1", 0.5)}),
        FeatureService(name="skewed", variants={"control": ("model_a", 0.9), "treatment": ("model_b", 0.1)}),
        FeatureService(name="three", variants={"a": ("model_a", 0.5), "b": ("model_b", 0.3), "c": ("model_a", 0.2)}),
    ]
    store.apply(splits)
    store.close()
    yield path


@pytest.fixture(scope="module")
def store(repo: Path) -> Iterator[FeatureStore]:
    s = FeatureStore(repo_path=repo)
    yield s
    s.close()


def _codes(n: int) -> pd.DataFrame:
    return pd.DataFrame({"commodity_code": [f"c{i}" for i in range(n)]})


def _arms(store: FeatureStore, split: str, codes: list[str]) -> dict[str, str]:
    frame = pd.DataFrame({"commodity_code": codes})
    return dict(zip(codes, store.assign_variants(split, frame), strict=True))


@pytest.mark.parametrize(
    ("split", "weights"), [("skewed", {"control": 0.9, "treatment": 0.1}), ("three", {"a": 0.5, "b": 0.3, "c": 0.2})]
)
def test_split_is_close_to_its_weights_over_100k_entities(store: FeatureStore, split: str, weights: dict) -> None:
    arms = store.assign_variants(split, _codes(100_000))
    shares = arms.value_counts(normalize=True).to_dict()
    assert set(shares) == set(weights)
    for arm, weight in weights.items():
        assert abs(shares[arm] - weight) < 0.01, (arm, shares[arm], weight)


def test_split_is_stable_across_processes(store: FeatureStore, repo: Path) -> None:
    codes = [f"c{i}" for i in range(2000)]
    here = _arms(store, "price_ab", codes)
    assert 0.4 < sum(a == "control" for a in here.values()) / len(codes) < 0.6
    script = (
        "import json, sys, pandas as pd\n"
        "from ladle import FeatureStore\n"
        f"store = FeatureStore(repo_path={str(repo)!r})\n"
        f"codes = [f'c{{i}}' for i in range({len(codes)})]\n"
        "arms = store.assign_variants('price_ab', pd.DataFrame({'commodity_code': codes}))\n"
        "print(json.dumps(dict(zip(codes, arms))))\n"
    )
    for seed in ("1",):  # this process hashes str with a random seed; the split must not care
        out = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, check=True,
            env={"PYTHONHASHSEED": seed, "PATH": "/usr/bin:/bin"}, timeout=120,
        )  # fmt: skip
        assert json.loads(out.stdout) == here
    # Serving agrees with the assignment, row by row.
    response = store.get_online_features("price_ab", [{"commodity_code": c} for c in codes[:50]])
    assert response.variants == [here[c] for c in codes[:50]]


def _one_of_each(store: FeatureStore) -> tuple[str, str]:
    arms = _arms(store, "price_ab", ["wti", "brent", *(f"x{i}" for i in range(50))])
    control = next(c for c, a in arms.items() if a == "control")
    treatment = next(c for c, a in arms.items() if a == "treatment")
    return control, treatment


def test_sdk_response_names_the_arm(store: FeatureStore) -> None:
    arms = _arms(store, "price_ab", ["wti", "brent"])
    for code in ("wti", "brent"):
        response = store.get_online_features("price_ab", [{"commodity_code": code}])
        assert response.variant == arms[code] and response.variants == [arms[code]]
        expected = ["commodity_code", "current_price"] + (["volume"] if arms[code] == "treatment" else [])
        assert response.feature_names == expected  # treatment reads model_b@v1, not model_b's latest
        assert response.to_dict()["current_price"] == [ONLINE_PRICES[code]]


def test_mixed_request_is_answered_per_row_in_order(store: FeatureStore) -> None:
    control, treatment = _one_of_each(store)
    rows = [{"commodity_code": treatment}, {"commodity_code": control}, {"commodity_code": treatment}]
    response = store.get_online_features("price_ab", rows)
    assert response.variant is None
    assert response.variants == ["treatment", "control", "treatment"]
    assert response.feature_names == ["commodity_code", "current_price", "volume"]
    assert response.to_dict()["commodity_code"] == [treatment, control, treatment]
    # The control arm (model_a) serves no volume: NOT_FOUND on its row.
    assert response.statuses_dict()["volume"][1] == FieldStatus.NOT_FOUND


def test_rest_header_says_which_variant_served(store: FeatureStore, repo: Path) -> None:
    control, treatment = _one_of_each(store)
    served = FeatureStore(repo_path=repo)
    try:
        with TestClient(create_app(served)) as client:

            def ask(service: str, codes: list[str]) -> Any:
                body = {"feature_service": service, "entities": {"commodity_code": codes}}
                return client.post("/get-online-features", json=body)

            one = ask("price_ab", [treatment])
            assert one.status_code == 200, one.text
            assert one.headers["x-ladle-variant"] == "treatment"
            assert one.json()["metadata"]["feature_names"] == ["commodity_code", "current_price", "volume"]
            mixed = ask("price_ab", [control, treatment])
            assert mixed.headers["x-ladle-variant"] == "control,treatment"
            plain = ask("model_a", [control])
            assert plain.status_code == 200 and "x-ladle-variant" not in plain.headers
    finally:
        served.close()


@pytest.mark.parametrize("engine", ["ladle", "grpcio"])
def test_grpc_metadata_says_which_variant_served(store: FeatureStore, repo: Path, engine: str) -> None:
    control, treatment = _one_of_each(store)
    with _grpc_channel(repo, engine) as channel:
        stub = serving_grpc.ServingServiceStub(channel)
        request = serving_pb.GetOnlineFeaturesRequest(
            feature_service="price_ab",
            entities={"commodity_code": value_pb.RepeatedValue(val=[value_pb.Value(string_val=control)])},
        )
        reply, call = stub.GetOnlineFeatures.with_call(request, timeout=10)
        assert dict(call.initial_metadata())["ladle-variant"] == "control"
        assert list(reply.metadata.feature_names.val) == ["commodity_code", "current_price"]
        _, call = stub.GetOnlineFeatures.with_call(
            serving_pb.GetOnlineFeaturesRequest(feature_service="model_a", entities=request.entities), timeout=10
        )
        assert "ladle-variant" not in dict(call.initial_metadata())
        both = value_pb.RepeatedValue(val=[value_pb.Value(string_val=c) for c in (treatment, control)])
        mixed, call = stub.GetOnlineFeatures.with_call(
            serving_pb.GetOnlineFeaturesRequest(feature_service="price_ab", entities={"commodity_code": both}),
            timeout=10,
        )
        assert dict(call.initial_metadata())["ladle-variant"] == "treatment,control"
        assert list(mixed.metadata.feature_names.val) == ["commodity_code", "current_price", "volume"]
        assert list(mixed.results[2].statuses) == [serving_pb.PRESENT if treatment in ONLINE_PRICES else
                                                   serving_pb.NOT_FOUND, serving_pb.NOT_FOUND]  # fmt: skip


def test_each_arms_training_data_can_be_rebuilt(store: FeatureStore) -> None:
    entity_df = pd.DataFrame(
        {"commodity_code": ["wti", "brent"], "event_timestamp": [SOURCE_TIME + pd.Timedelta(minutes=5)] * 2}
    )
    arms = store.assign_variants("price_ab", entity_df)
    for arm in ("control", "treatment"):
        rows = entity_df[arms == arm]
        service = store.variant_service("price_ab", arm)
        frame = store.get_historical_features(rows, feature_service=service).to_df()
        assert sorted(frame.commodity_code) == sorted(rows.commodity_code)
        assert dict(zip(frame.commodity_code, frame.current_price, strict=True)) == {
            c: V1_PRICES[c] for c in rows.commodity_code
        }
        assert ("volume" in frame.columns) == (arm == "treatment")  # model_b@v1 had volume
    with pytest.raises(InvalidFeatureReferenceError, match="splits traffic"):
        store.get_historical_features(entity_df, feature_service="price_ab")


def test_split_definitions_are_checked(store: FeatureStore) -> None:
    with pytest.raises(DefinitionError, match="sum to 1"):
        FeatureService(name="bad", variants={"a": ("model_a", 0.5), "b": ("model_b", 0.4)})
    with pytest.raises(DefinitionError, match="into itself"):
        FeatureService(name="bad", variants={"a": ("bad", 1.0)})
    with pytest.raises(DefinitionError, match="lists no features"):
        FeatureService(name="bad", features=[prices_view("v1")], variants={"a": ("model_a", 1.0)})
    with pytest.raises(DefinitionError, match="does not exist"):
        store.plan([FeatureService(name="bad", variants={"a": ("nope", 1.0)})], partial=True)
    with pytest.raises(DefinitionError, match="is itself a split"):
        store.plan([FeatureService(name="bad", variants={"a": ("price_ab", 1.0)})], partial=True)
    with pytest.raises(RequestError, match="not a split"):
        store.assign_variants("model_a", _codes(3))


def test_plan_warns_when_a_change_breaks_a_pinned_arm(store: FeatureStore) -> None:
    no_volume = prices_view("no_volume")
    model_b = FeatureService(name="model_b", features=[no_volume[["current_price"]]])
    before = store.registry.version()
    planned = store.plan([COMMODITY, no_volume, model_b], partial=True)
    assert planned.warnings == (
        "variant 'treatment' of 'price_ab' (model_b@v1) reads 'prices:volume', which the latest 'prices' removes",
    )
    with pytest.raises(PinConflictError):
        store.apply([COMMODITY, no_volume, model_b])
    assert store.registry.version() == before


def test_assignment_is_the_documented_keyed_hash(store: FeatureStore) -> None:
    """docs/versions.md: BLAKE2b-64 keyed with the split's name over length-prefixed, type-tagged join-key
    values; the digest over 2**64 falls into the cumulative weights. Recomputed here from that text alone,
    so a change of the algorithm (which would reshuffle running experiments) fails this test."""
    import hashlib

    codes = [f"c{i}" for i in range(300)]
    served = _arms(store, "three", codes)
    for code in codes:
        part = b"s" + code.encode()
        digest = hashlib.blake2b(len(part).to_bytes(4, "big") + part, digest_size=8, key=b"three").digest()
        fraction = int.from_bytes(digest, "big") / 2**64
        expected = "a" if fraction < 0.5 else "b" if fraction < 0.8 else "c"
        assert served[code] == expected, code
