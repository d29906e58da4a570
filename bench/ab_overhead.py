"""What pins and A/B splits cost on the REST read path, in-process (no network, no load generator).

The REST ASGI app over an embedded repo (SQLite online store) answers ``POST /get-online-features``
in a loop, driven directly (scope, receive, send); the figure is the best of ``--repeat`` rounds of
``--requests`` calls, in microseconds per request. Cases:

* ``refs``: 1 entity x 3 features by reference (W3a's shape): the path every existing client uses;
* ``pinned``: the same features through ``prices@v1:...`` (skipped on a Ladle without pins);
* ``split``: a split service with two arms (skipped on a Ladle without splits).

Because the app is driven in-process, the figure isolates Ladle's own per-request work, which is
what a change to the read path can regress; run it against two checkouts to compare them::

    .venv/bin/python -m bench.ab_overhead
    PYTHONPATH=/path/to/other/checkout/src .venv/bin/python -m bench.ab_overhead
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

import ladle
from bench.common import emit
from ladle import Entity, FeatureService, FeatureStore, FeatureView, Field, FileSource, Float64, Int64, ValueType
from ladle.server.rest import create_app

FEATURES = ["current_price", "price_change_1h", "volume_24h"]


def _repo(path: Path) -> FeatureStore:
    (path / "data").mkdir(parents=True)
    (path / "feature_store.yaml").write_text(
        "project: ab_overhead\nregistry:\n  path: data/registry.db\nonline_store:\n  type: sqlite\n"
        "  path: data/online.db\noffline_store:\n  type: duckdb\n"
    )
    now = datetime.now(UTC) - timedelta(minutes=5)
    codes = [f"c{i}" for i in range(1000)]
    table = pa.table(
        {
            "commodity_code": codes,
            "current_price": pa.array([float(i) for i in range(1000)]),
            "price_change_1h": pa.array([0.5] * 1000),
            "volume_24h": pa.array(list(range(1000)), pa.int64()),
            "event_timestamp": pa.array([now] * 1000, pa.timestamp("us", tz="UTC")),
        }
    )
    pq.write_table(table, path / "data" / "prices.parquet")
    commodity = Entity(name="commodity", join_keys=["commodity_code"], value_type=ValueType.STRING)
    source = FileSource(name="prices_file", path="data/prices.parquet", timestamp_field="event_timestamp")
    schema = [Field(name="current_price", dtype=Float64), Field(name="price_change_1h", dtype=Float64)]
    view = FeatureView(
        name="prices", entities=[commodity], ttl=timedelta(days=1), source=source,
        schema=[*schema, Field(name="volume_24h", dtype=Int64)],
    )  # fmt: skip
    store = FeatureStore(repo_path=path)
    store.apply([commodity, view, FeatureService(name="model_a", features=[view]),
                 FeatureService(name="model_b", features=[view[FEATURES[:2]]])])  # fmt: skip
    store.online_store.write("ab_overhead", store.snapshot(allow_cache=False).feature_view("prices"), table)
    with contextlib.suppress(TypeError):  # a Ladle without splits has no variants= argument
        store.apply([FeatureService(name="price_ab", variants={"a": ("model_a", 0.5), "b": ("model_b", 0.5)})])
    return store


async def _rounds(app: Any, body: bytes, requests: int, repeat: int) -> tuple[float, int]:
    scope = {
        "type": "http", "method": "POST", "path": "/get-online-features", "query_string": b"",
        "headers": [(b"content-type", b"application/json")], "http_version": "1.1", "scheme": "http",
        "server": ("127.0.0.1", 0), "client": ("127.0.0.1", 1),
    }  # fmt: skip
    status = 0

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        for _ in range(requests):
            await app(scope, receive, send)
        best = min(best, (time.perf_counter() - started) / requests)
    return best * 1e6, status


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=3000, help="requests per round")
    parser.add_argument("--repeat", type=int, default=7, help="rounds (the best is reported)")
    args = parser.parse_args()
    cases: dict[str, dict[str, Any]] = {
        "refs": {"features": [f"prices:{f}" for f in FEATURES]},
        "pinned": {"features": [f"prices@v1:{f}" for f in FEATURES]},
        "split": {"feature_service": "price_ab"},
    }
    with tempfile.TemporaryDirectory() as tmp:
        store = _repo(Path(tmp))
        app = create_app(store)
        for case, request in cases.items():
            body = orjson.dumps({**request, "entities": {"commodity_code": ["c7"]}})
            us, status = asyncio.run(_rounds(app, body, args.requests, args.repeat))
            if status != 200:
                print(f"{case}: not supported by this Ladle (HTTP {status})")
                continue
            emit({"workload": f"ab_overhead-{case}", "us_per_request": round(us, 1), "ladle": ladle.__file__})
        store.close()


if __name__ == "__main__":
    main()
