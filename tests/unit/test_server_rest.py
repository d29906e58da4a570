"""The REST API in-process, over a real repo (SQLite registry and online store, Parquet source)."""

from __future__ import annotations

import json
import re
import time
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ladle import FeatureStore
from ladle.server.codec import format_timestamp
from ladle.server.rest import RestApp, create_app
from ladle.server.settings import ServerSettings
from unit.server_repo import EVENT_TIME, PRICES, SOURCE_TIME, build_repo

with warnings.catch_warnings():  # starlette asks for httpx2 here; the plain httpx client is what we have
    warnings.filterwarnings("ignore", message=".*httpx2")
    from starlette.testclient import TestClient

EPOCH = "1970-01-01T00:00:00Z"
EVENT_TEXT = EVENT_TIME.strftime("%Y-%m-%dT%H:%M:%SZ")
URL = "/get-online-features"


@pytest.fixture(scope="module")
def repo_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("rest_repo")
    build_repo(path).store.close()
    return path


@pytest.fixture(scope="module")
def app(repo_path: Path) -> Iterator[RestApp]:
    store = FeatureStore(repo_path=repo_path)
    yield create_app(store)
    store.close()


@pytest.fixture(scope="module")
def client(app: RestApp) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


def feast_error(response: Any) -> dict[str, Any]:
    """Decode Feast's double-encoded error body."""
    body = response.json()
    assert isinstance(body, str), f"error body must be a JSON string, got {body!r}"
    detail: dict[str, Any] = json.loads(body)
    assert detail["module"] == "feast.errors"
    return detail


def columns(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return dict(zip(body["metadata"]["feature_names"], body["results"], strict=True))


# -- get-online-features -------------------------------------------------------------------------


def test_online_features_exact_feast_json(client: TestClient) -> None:
    body = {
        "features": ["commodity_price_features:current_price", "commodity_price_features:volume_24h"],
        "entities": {"commodity_code": ["crude_oil_wti", "nope", "brent"]},
    }
    response = client.post(URL, json=body)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "metadata": {"feature_names": ["commodity_code", "current_price", "volume_24h"]},
        "results": [
            {
                "values": ["crude_oil_wti", "nope", "brent"],
                "statuses": ["PRESENT"] * 3,
                "event_timestamps": [EPOCH] * 3,
            },
            {
                "values": [PRICES["crude_oil_wti"][0], None, PRICES["brent"][0]],
                "statuses": ["PRESENT", "NOT_FOUND", "PRESENT"],
                "event_timestamps": [EVENT_TEXT, EPOCH, EVENT_TEXT],
            },
            {
                "values": [PRICES["crude_oil_wti"][2], None, PRICES["brent"][2]],
                "statuses": ["PRESENT", "NOT_FOUND", "PRESENT"],
                "event_timestamps": [EVENT_TEXT, EPOCH, EVENT_TEXT],
            },
        ],
    }


def test_the_documented_curl_request(client: TestClient) -> None:
    raw = (
        '{"features": ["commodity_price_features:current_price", "commodity_price_features:price_change_24h"], '
        '"entities": {"commodity_code": ["crude_oil_wti"]}}'
    )
    response = client.post(URL, content=raw, headers={"Content-Type": "application/json"})
    assert response.status_code == 200
    cols = columns(response.json())
    assert cols["current_price"]["values"] == [PRICES["crude_oil_wti"][0]]
    assert cols["price_change_24h"]["values"] == [PRICES["crude_oil_wti"][1]]


def test_legacy_remote_client_body_without_content_type(client: TestClient) -> None:
    # Feast 0.39-0.63: one request per view, first join key only, body sent as data= (no header).
    raw = json.dumps(
        {"features": ["commodity_price_features:current_price"], "entities": {"commodity_code": ["brent"]}}
    )
    response = client.post(URL, content=raw.encode(), headers={"content-type": ""})
    assert response.status_code == 200
    body = response.json()
    # The old client reads results[1].event_timestamps[0] with fromisoformat after dropping "Z".
    assert datetime.fromisoformat(body["results"][1]["event_timestamps"][0].replace("Z", "")) == EVENT_TIME.replace(
        tzinfo=None
    )
    assert body["results"][1]["values"] == [PRICES["brent"][0]]


def test_current_client_body_with_extra_fields(client: TestClient) -> None:
    body = {
        "entities": {"commodity_code": ["brent"], "unknown_request_column": [1]},
        "full_feature_names": True,
        "include_feature_view_version_metadata": True,
        "some_future_field": {"x": 1},
        "features": ["commodity_price_features:current_price"],
    }
    response = client.post(URL, json=body)
    assert response.status_code == 200
    assert response.json()["metadata"]["feature_names"] == ["commodity_code", "commodity_price_features__current_price"]


def test_feature_service_wins_over_features(client: TestClient) -> None:
    body = {
        "feature_service": "price_model",
        "features": ["no_such_view:x"],
        "entities": {"commodity_code": ["crude_oil_wti"], "station_id": [1]},
    }
    response = client.post(URL, json=body)
    assert response.status_code == 200
    cols = columns(response.json())
    assert list(cols) == ["commodity_code", "station_id", "current_price", "name"]
    assert cols["name"]["values"] == ["JFK"]
    assert cols["station_id"]["values"] == [1]


def test_typed_values_encode_like_feast(client: TestClient) -> None:
    features = [f"station_features:{f}" for f in ("name", "active", "elevation", "readings", "code", "installed")]
    response = client.post(URL, json={"features": features, "entities": {"station_id": [1, 2]}})
    assert response.status_code == 200
    cols = columns(response.json())
    assert cols["name"]["values"] == ["JFK", "SEA"]
    assert cols["active"]["values"] == [True, False]
    assert cols["elevation"]["values"] == [4, 131]
    assert cols["readings"]["values"] == [[1.5, 2.5], []]
    assert cols["code"]["values"] == ["AAE=", "eg=="]  # base64
    installed = int(datetime(2020, 5, 1, tzinfo=UTC).timestamp())
    assert cols["installed"]["values"] == [installed, installed]  # unix_timestamp_val: epoch seconds


def test_timestamp_formatting_is_adaptive() -> None:
    assert format_timestamp(0) == EPOCH
    assert format_timestamp(1_700_000_000_000_000) == "2023-11-14T22:13:20Z"
    assert format_timestamp(1_700_000_000_123_000) == "2023-11-14T22:13:20.123Z"
    assert format_timestamp(1_700_000_000_123_456) == "2023-11-14T22:13:20.123456Z"


@pytest.mark.parametrize(
    ("body", "status", "feast_class", "words"),
    [
        ({"features": ["nope_view:x"], "entities": {"commodity_code": ["a"]}}, 404, "FeatureViewNotFoundException",
         "nope_view"),
        ({"feature_service": "nope_service", "entities": {"commodity_code": ["a"]}}, 404,
         "FeatureServiceNotFoundException", "nope_service"),
        ({"features": ["commodity_price_features:nope"], "entities": {"commodity_code": ["a"]}}, 404,
         "FeastObjectNotFoundException", "nope"),
        ({"features": ["commodity_price_features:current_price"], "entities": {"station_id": [1]}}, 400,
         "FeastError", "commodity_code"),
        ({"features": ["commodity_price_features:current_price"], "entities": {"commodity_code": ["a", "b"],
          "station_id": [1]}}, 400, "FeastError", "different lengths"),
        ({"features": ["commodity_price_features:current_price", "live_prices:current_price"],
          "entities": {"commodity_code": ["a"]}}, 400, "FeatureNameCollisionError", "full_feature_names"),
        ({"features": ["commodity_price_features:current_price"], "entities": {"commodity_code": ["a"] * 501}}, 413,
         "FeastError", "limit is 500"),
        ({"features": ["commodity_price_features:current_price"], "entities": {"commodity_code": [1.5]}}, 400,
         "FeastError", "commodity_code"),
        ({"features": "commodity_price_features:current_price", "entities": {"commodity_code": ["a"]}}, 400,
         "FeastError", "'features'"),
        ({"features": ["commodity_price_features:current_price"], "entities": {"commodity_code": "a"}}, 400,
         "FeastError", "list"),
        ({"features": ["commodity_price_features:current_price"]}, 400, "FeastError", "'entities'"),
        ({"entities": {"commodity_code": ["a"]}}, 400, "FeastError", "feature_service"),
        ({"features": ["a:b:c"], "entities": {"commodity_code": ["a"]}}, 400, "FeastError", "malformed"),
        ({"features": ["commodity_price_features:current_price"], "entities": {"commodity_code": ["a"]},
          "full_feature_names": "yes"}, 400, "FeastError", "full_feature_names"),
    ],
)  # fmt: skip
def test_bad_requests_get_feast_errors(
    client: TestClient, body: dict[str, Any], status: int, feast_class: str, words: str
) -> None:
    response = client.post(URL, json=body)
    assert response.status_code == status, response.text
    detail = feast_error(response)
    assert detail["class"] == feast_class
    assert words in detail["message"]


@pytest.mark.parametrize("raw", [b"", b"{", b"[1, 2]", b"null", b'"text"', b"\xff\xfe"])
def test_malformed_bodies_are_400(client: TestClient, raw: bytes) -> None:
    response = client.post(URL, content=raw)
    assert response.status_code == 400
    assert "JSON" in feast_error(response)["message"]


def test_body_over_the_limit_is_413(client: TestClient) -> None:
    raw = json.dumps({"features": ["commodity_price_features:current_price"], "entities": {"x": ["a" * 300_000]}})
    response = client.post(URL, content=raw)
    assert response.status_code == 413
    assert "200000 bytes" in feast_error(response)["message"]


def test_unknown_routes_and_methods(client: TestClient) -> None:
    assert client.get("/nope").status_code == 404
    assert client.get(URL).status_code == 405
    assert client.post("/health").status_code == 405


# -- health, metrics, docs -----------------------------------------------------------------------


def test_health_and_ready(client: TestClient) -> None:
    health = client.get("/health")
    assert (health.status_code, health.content) == (200, b"")
    ready = client.get("/ready")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "checks": {"registry": "ok", "online_store": "ok"}}


def test_ready_names_what_is_down(repo_path: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    store = FeatureStore(repo_path=repo_path)
    config = store.config.model_copy(
        update={"online_store": store.config.online_store.model_copy(update={"path": str(blocker / "online.db")})}
    )
    with TestClient(create_app(FeatureStore(config=config))) as c:
        response = c.get("/ready")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["registry"] == "ok"
    assert body["checks"]["online_store"].startswith("down: ")


def _sample(text: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#") or " " not in line:
            continue
        metric, value = line.rsplit(" ", 1)
        base, _, rest = metric.partition("{")
        got = ",".join(sorted(rest.rstrip("}").split(","))) if rest else ""
        if base == name and got == wanted:
            return float(value)
    return 0.0


def test_metrics_count_requests_views_and_misses(client: TestClient) -> None:
    before = client.get("/metrics").text
    body = {"features": ["commodity_price_features:current_price"], "entities": {"commodity_code": ["brent", "x", "y"]}}
    for _ in range(3):
        assert client.post(URL, json=body).status_code == 200
    client.post(URL, json={"features": ["nope:x"], "entities": {"a": [1]}})
    after = client.get("/metrics")
    assert after.status_code == 200
    assert after.headers["content-type"].startswith("text/plain")
    text = after.text

    def delta(name: str, **labels: str) -> float:
        return _sample(text, name, **labels) - _sample(before, name, **labels)

    latency = {"endpoint": URL, "protocol": "rest"}
    assert delta("feast_online_request_latency_count", **latency) == 4
    assert delta("feast_feature_server_request_total", status="200", **latency) == 3
    assert delta("feast_feature_server_request_total", status="404", **latency) == 1
    assert delta("feast_feature_request_count_total", feature_view="commodity_price_features") == 9
    assert delta("feast_feature_not_found_count_total", feature_view="commodity_price_features") == 6
    assert delta("feast_online_features_entity_count_count") == 3
    freshness = _sample(text, "feast_feature_freshness_seconds", project="server_test",
                        feature_view="commodity_price_features")  # fmt: skip
    # The newest event this process has seen for the view: the rows read here, or newer writes.
    age = time.time() - EVENT_TIME.timestamp()
    assert 0 < freshness < age + 60  # 0 would mean the sample is missing


def test_docs_and_openapi(client: TestClient, app: RestApp) -> None:
    docs = client.get("/docs")
    assert docs.status_code == 200
    assert "swagger-ui" in docs.text and "/openapi.json" in docs.text
    schema = client.get("/openapi.json").json()
    assert schema["openapi"].startswith("3.")
    assert set(schema["paths"]) == set(app.routes) - {"/docs", "/openapi.json"}


# -- writes and materialization ------------------------------------------------------------------


def _read_one(client: TestClient, ref: str, code: str) -> tuple[Any, str]:
    response = client.post(URL, json={"features": [ref], "entities": {"commodity_code": [code]}})
    assert response.status_code == 200, response.text
    result = response.json()["results"][1]
    return result["values"][0], result["statuses"][0]


def test_write_to_online_store_with_the_remote_client_body(client: TestClient) -> None:
    when = (datetime.now(UTC) - timedelta(minutes=5)).replace(tzinfo=None)
    body = {
        "feature_view_name": "commodity_price_features",
        "df": {
            "commodity_code": ["copper"],
            "current_price": [4.125],
            "price_change_24h": [0.5],
            "volume_24h": [77],
            "event_timestamp": [when.isoformat()],
            "created": [None],
        },
        "allow_registry_cache": False,
    }
    response = client.post("/write-to-online-store", json=body)
    assert response.status_code == 200, response.text
    assert response.content == b"null"
    assert _read_one(client, "commodity_price_features:current_price", "copper") == (4.125, "PRESENT")


def test_write_to_unknown_view_is_404(client: TestClient) -> None:
    response = client.post("/write-to-online-store", json={"feature_view_name": "nope", "df": {"a": [1]}})
    assert response.status_code == 404
    assert feast_error(response)["class"] == "FeatureViewNotFoundException"


def test_push_then_read(client: TestClient) -> None:
    when = datetime.now(UTC).isoformat()
    body = {
        "push_source_name": "price_push",
        "df": {"commodity_code": ["silver", "tin"], "current_price": [23.5, 31.0], "volume_24h": 5,
               "price_change_24h": [0.0, 0.0], "event_timestamp": [when, when], "created": [when, when]},
        "to": "online",
    }  # fmt: skip
    response = client.post("/push", json=body)
    assert response.status_code == 200, response.text
    assert response.content == b""
    assert _read_one(client, "live_prices:current_price", "silver") == (23.5, "PRESENT")
    assert _read_one(client, "live_prices:volume_24h", "tin") == (5, "PRESENT")


@pytest.mark.parametrize(
    ("body", "status", "feast_class"),
    [
        ({"push_source_name": "nope", "df": {"a": [1]}}, 422, "PushSourceNotFoundException"),
        ({"push_source_name": "price_push", "df": {"commodity_code": ["a"]}, "to": "sideways"}, 400, "FeastError"),
        ({"push_source_name": "price_push", "df": {"commodity_code": ["a", "b"], "current_price": [1.0, 2.0, 3.0]}},
         400, "FeastError"),
        ({"push_source_name": "price_push", "df": []}, 400, "FeastError"),
        ({"df": {"a": [1]}}, 400, "FeastError"),
    ],
)  # fmt: skip
def test_bad_pushes(client: TestClient, body: dict[str, Any], status: int, feast_class: str) -> None:
    response = client.post("/push", json=body)
    assert response.status_code == status, response.text
    assert feast_error(response)["class"] == feast_class


def test_materialize_window(client: TestClient, app: RestApp) -> None:
    body = {
        "start_ts": (SOURCE_TIME - timedelta(days=1)).isoformat(),
        "end_ts": (SOURCE_TIME + timedelta(days=1)).isoformat(),
        "feature_views": ["commodity_price_features"],
    }
    duration = "feast_materialization_duration_count"
    before = _sample(client.get("/metrics").text, duration, feature_view="commodity_price_features")
    response = client.post("/materialize", json=body)
    assert response.status_code == 200, response.text
    assert response.content == b"null"
    after = _sample(client.get("/metrics").text, duration, feature_view="commodity_price_features")
    assert after - before == 1
    view = app.core.store.snapshot().feature_view("commodity_price_features")
    from ladle.online.base import ReadRequest

    rows = app.core.store.online_store.read(
        "server_test", [ReadRequest(view, ["current_price"], {"commodity_code": ["gold"]})]
    )
    assert rows[0].event_ts == [int(SOURCE_TIME.timestamp() * 1_000_000)]


def test_materialize_async_and_conflict(client: TestClient, app: RestApp) -> None:
    body = {"end_ts": (SOURCE_TIME + timedelta(days=1)).isoformat(), "feature_views": ["commodity_price_features"]}
    app.core.claim(["commodity_price_features"])  # as if a run were in progress in this worker
    try:
        busy = client.post("/materialize-incremental?async=true", json=body)
    finally:
        app.core.release(["commodity_price_features"])
    assert busy.status_code == 409
    assert "already being materialized" in feast_error(busy)["message"]
    accepted = client.post("/materialize-incremental?async=true", json=body)
    assert accepted.status_code == 202
    assert accepted.json() == {"status": "accepted", "feature_views": ["commodity_price_features"]}


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/materialize", {"start_ts": "yesterday", "end_ts": "2024-01-01"}, 400),
        ("/materialize", {"end_ts": "2024-01-01"}, 400),
        ("/materialize", {"start_ts": "2024-02-01", "end_ts": "2024-01-01"}, 400),
        ("/materialize", {"start_ts": "2024-01-01", "end_ts": "2024-01-02", "feature_views": ["nope"]}, 404),
        ("/materialize-incremental", {}, 400),
        ("/materialize-incremental", {"end_ts": 5}, 400),
    ],
)
def test_bad_materialize_requests(client: TestClient, path: str, body: dict[str, Any], status: int) -> None:
    assert client.post(path, json=body).status_code == status


# -- settings and docs ---------------------------------------------------------------------------


def test_settings_take_config_defaults_and_reject_nonsense(app: RestApp) -> None:
    assert app.settings.max_entities_per_request == 500
    assert app.settings.max_body_bytes == 200_000
    from ladle.errors import ConfigError

    for bad in ({"workers": 0}, {"port": 70000}, {"rest": False, "grpc": False}, {"max_body_bytes": 0}):
        with pytest.raises(ConfigError):
            ServerSettings(**bad)  # type: ignore[arg-type]


def test_docs_cover_settings_routes_and_metrics(app: RestApp) -> None:
    from ladle.server.metrics import METRIC_NAMES
    from ladle.server.settings import markdown_table

    doc = (Path(__file__).parents[2] / "docs" / "server.md").read_text()
    assert markdown_table() in doc, (
        "docs/server.md settings table is stale: paste ladle.server.settings.markdown_table()"
    )
    for route in app.routes:
        assert f"`{route}`" in doc or f"`GET {route}`" in doc or f"`POST {route}`" in doc, route
    for name in METRIC_NAMES:
        assert re.search(rf"`{name}(_total|_seconds)?[`{{]", doc), name


def test_batched_metrics_equal_direct_observations() -> None:
    from prometheus_client import CollectorRegistry, Counter, Histogram

    from ladle.server.metrics import _Pending

    def samples(registry: CollectorRegistry) -> list[tuple[str, dict[str, str], float]]:
        return [(s.name, s.labels, s.value) for m in registry.collect() for s in m.samples if "created" not in s.name]

    direct, batched = CollectorRegistry(), CollectorRegistry()
    pending = _Pending()
    for registry in (direct, batched):
        Histogram("h", "h", ["k"], buckets=(0.001, 0.01, 1), registry=registry)
        Counter("c", "c", registry=registry)
    hist_d, hist_b = (r._names_to_collectors["h"].labels("x") for r in (direct, batched))  # type: ignore[attr-defined]
    count_d, count_b = (r._names_to_collectors["c"] for r in (direct, batched))  # type: ignore[attr-defined]
    for value in (0, 0.001, 0.0011, 0.5, 1, 2, 0.01, 1e9):
        hist_d.observe(value)
        pending.observe(hist_b, value)
        count_d.inc(2)
        pending.inc(count_b, 2)
    assert samples(direct) != samples(batched)  # nothing written before the flush
    pending.flush()
    assert samples(direct) == samples(batched)
