"""``online_store: type: remote``: the SDK against a real ``ladle serve`` (API-key auth), compared with
the embedded SDK over the same repo; sync, async and on-demand views."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from ladle import FeatureStore
from ladle.errors import AuthenticationError, RequestError
from security.serve_process import Served, serve
from unit.odfv_repo import PROJECT, build_odfv_repo

KEY = "ladle_remote_test_key_0123456789abcdef"
FEATURES = ["prices:current_price", "prices:volume_24h", "order_value:order_value", "big_order:big_order"]
ROWS = {"commodity_code": ["brent", "nope", "gold"], "quantity": [2.0, 500.0, 0.5]}


@pytest.fixture(scope="module")
def server_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("remote_server")
    build_odfv_repo(path).close()
    config = yaml.safe_load((path / "feature_store.yaml").read_text())
    digest = hashlib.sha256(KEY.encode()).hexdigest()
    config["auth"] = {"type": "api_key", "keys": [{"name": "model", "sha256": digest, "roles": ["reader"]}]}
    (path / "feature_store.yaml").write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def served(server_repo: Path) -> Iterator[Served]:
    with serve(server_repo) as running:
        yield running


def client_repo(root: Path, port: int, token: str | None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    config: dict[str, object] = {
        "project": PROJECT,
        "registry": "data/registry.db",
        "online_store": {"type": "remote", "path": f"http://127.0.0.1:{port}"},
    }
    if token is not None:
        config["auth"] = {"type": "api_key", "token": token}
    (root / "feature_store.yaml").write_text(yaml.safe_dump(config))
    return root


@pytest.fixture(scope="module")
def remote(served: Served, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FeatureStore]:
    store = FeatureStore(repo_path=client_repo(tmp_path_factory.mktemp("client"), served.rest_port, KEY))
    yield store
    store.close()


@pytest.fixture(scope="module")
def embedded(server_repo: Path) -> Iterator[FeatureStore]:
    yaml_file = server_repo / "feature_store.yaml"
    config = yaml.safe_load(yaml_file.read_text())
    config.pop("auth")  # the embedded SDK of the same repo, without the server's key check
    store = FeatureStore(repo_path=server_repo, config=config)
    yield store
    store.close()


def test_remote_reads_match_the_embedded_sdk(remote: FeatureStore, embedded: FeatureStore) -> None:
    for full in (False, True):
        got = remote.get_online_features(FEATURES, ROWS, full_feature_names=full)
        want = embedded.get_online_features(FEATURES, ROWS, full_feature_names=full)
        assert got.to_dict() == want.to_dict()
        assert got.statuses == want.statuses
        assert got.event_timestamps == want.event_timestamps
    records = [dict(zip(ROWS, values, strict=True)) for values in zip(*ROWS.values(), strict=True)]
    from_records = remote.get_online_features(FEATURES, records).to_dict()
    assert from_records == embedded.get_online_features(FEATURES, ROWS).to_dict()


def test_async_is_the_same_answer_and_runs_concurrently(remote: FeatureStore, embedded: FeatureStore) -> None:
    want = embedded.get_online_features(FEATURES, ROWS).to_dict()

    async def many(store: FeatureStore) -> list[dict[str, list[object]]]:
        answers = await asyncio.gather(*(store.get_online_features_async(FEATURES, ROWS) for _ in range(20)))
        return [a.to_dict() for a in answers]

    assert asyncio.run(many(remote)) == [want] * 20
    assert asyncio.run(many(embedded)) == [want] * 20


def test_credentials_and_errors_come_back_typed(served: Served, remote: FeatureStore, tmp_path: Path) -> None:
    anonymous = FeatureStore(repo_path=client_repo(tmp_path / "anon", served.rest_port, None))
    try:
        with pytest.raises(AuthenticationError):
            anonymous.get_online_features(FEATURES, ROWS)
    finally:
        anonymous.close()
    keyed = FeatureStore(repo_path=client_repo(tmp_path / "arg", served.rest_port, None), credential=KEY)
    try:
        assert keyed.get_online_features(["prices:current_price"], {"commodity_code": ["gold"]}).to_dict()
    finally:
        keyed.close()
    with pytest.raises(RequestError, match="quantity"):
        remote.get_online_features(["order_value:order_value"], {"commodity_code": ["gold"]})


def test_remote_offline_store_takes_the_servers_training_set(
    served: Served, embedded: FeatureStore, tmp_path: Path
) -> None:
    import pandas as pd

    root = client_repo(tmp_path / "offline", served.rest_port, KEY)
    config = yaml.safe_load((root / "feature_store.yaml").read_text())
    config["offline_store"] = {"type": "remote", "path": f"http://127.0.0.1:{served.rest_port}"}
    (root / "feature_store.yaml").write_text(yaml.safe_dump(config))
    entity_df = pd.DataFrame(
        {
            "commodity_code": ["brent", "gold", "brent"],
            "quantity": [3.0, 1.0, 4.0],
            "event_timestamp": pd.to_datetime(["2024-01-06", "2024-01-06", "2024-01-01"], utc=True),
        }
    )
    features = ["prices:current_price", "order_value:order_value"]
    store = FeatureStore(repo_path=root)
    try:
        got = store.get_historical_features(entity_df, features).to_df()
    finally:
        store.close()
    want = embedded.get_historical_features(entity_df, features).to_df()
    pd.testing.assert_frame_equal(got, want)
    assert got["order_value"].notna().sum() == 2
    anonymous = FeatureStore(
        repo_path=client_repo(tmp_path / "anon", served.rest_port, None), config={**config, "auth": {"type": "no_auth"}}
    )
    try:
        with pytest.raises(AuthenticationError):
            anonymous.get_historical_features(entity_df, features).to_df()
    finally:
        anonymous.close()


def test_remote_store_read_and_write_protocol(remote: FeatureStore, embedded: FeatureStore) -> None:
    from datetime import UTC, datetime

    import pyarrow as pa

    from ladle.online.base import ReadRequest

    online = remote.online_store
    online.token_source = lambda: KEY  # type: ignore[attr-defined]
    view = embedded.snapshot(allow_cache=False).feature_view("prices")
    request = [ReadRequest(view, ["current_price", "volume_24h"], {"commodity_code": ["gold", "nope"]})]
    got, want = online.read(PROJECT, request)[0], embedded.online_store.read(PROJECT, request)[0]
    assert (got.event_ts, got.values) == (want.event_ts, want.values)
    now = datetime.now(UTC).replace(microsecond=0)
    rows = pa.table(
        {
            "commodity_code": ["platinum"],
            "current_price": [950.5],
            "volume_24h": pa.array([7], pa.int64()),
            "event_timestamp": pa.array([now], pa.timestamp("us", tz="UTC")),
        }
    )
    assert online.write(PROJECT, view, rows) == 1
    after = embedded.online_store.read(
        PROJECT, [ReadRequest(view, ["current_price"], {"commodity_code": ["platinum"]})]
    )
    assert after[0].values["current_price"] == [950.5]
