"""The online read plan: its column layout and dtypes, its cache, and the server metrics taken from it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from ladle import Bool, FeatureService, FeatureStore, FeatureView, FieldStatus, Float64, Int64, String
from ladle.retrieval.online import OnlineRetriever
from ladle.server import metrics
from ladle.server.core import OnlineRequest, ServerCore
from ladle.server.settings import ServerSettings

from .online_repo import PRICE_FIELDS, TS, build, commodity, live_prices, prices, quotes, ticks

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
MANY = FeatureService(name="many_views", features=[prices, live_prices[["price"]], quotes.with_name("q")])


@pytest.fixture
def store(tmp_path: Path) -> Iterator[FeatureStore]:
    st = build(tmp_path)
    st.apply([MANY])
    snap = st.snapshot()
    fresh = NOW - timedelta(hours=1)
    rows = pa.table(
        {
            "commodity_code": ["A", "B"],
            "price": [1.5, 2.5],
            "volume": pa.array([10, None], pa.int64()),
            "note": ["a", "b"],
            "event_timestamp": pa.array([fresh, fresh], TS),
        }
    )
    st.online_store.write(st.project, snap.feature_view("prices"), rows)
    st.online_store.write(st.project, snap.feature_view("live_prices"), rows.slice(0, 1))  # A only
    quote_rows = pa.table(
        {
            "venue_id": pa.array([1], pa.int64()),
            "commodity_code": ["A"],
            "bid": [10.0],
            "event_timestamp": pa.array([fresh], TS),
        }
    )
    st.online_store.write(st.project, snap.feature_view("quotes"), quote_rows)
    yield st
    st.close()


def test_plan_lays_out_columns_view_by_view_with_their_dtypes(store: FeatureStore) -> None:
    retriever = OnlineRetriever(store.registry, store.online_store, clock=NOW.timestamp)
    plan = retriever.plan(store.snapshot(), "many_views", True, ("venue_id", "commodity_code", "unused"))
    assert plan.key_columns == ("venue_id", "commodity_code")
    assert plan.feature_names == (
        "venue_id", "commodity_code", "prices__price", "prices__volume", "prices__note", "live_prices__price", "q__bid",
    )  # fmt: skip
    assert [(r.name, r.start, r.stop) for r in plan.reads] == [
        ("prices", 2, 5), ("live_prices", 5, 6), ("quotes", 6, 7)
    ]  # fmt: skip
    assert [d.name if d else None for d in plan.dtypes] == [
        "Int64", "String", "Float64", "Int64", "String", "Float64", "Float64"
    ]  # fmt: skip
    response = retriever.read(plan, {"venue_id": [1, 2], "commodity_code": ["A", "A"]}, 2)
    assert response.feature_names == list(plan.feature_names)
    assert response.values[plan.reads[2].start] == [10.0, None]  # quotes: venue 2 has no row


def test_per_view_metrics_of_a_read_over_many_views(store: FeatureStore) -> None:
    core = ServerCore(store, ServerSettings())
    request = OnlineRequest(None, "many_views", {"commodity_code": ["A", "B", "Z"], "venue_id": [1, 1, 1]}, True)

    def counts() -> dict[tuple[str, str], float]:
        metrics.flush()
        text = metrics.render()[0].decode()
        out = {}
        for name in ("feast_feature_request_count_total", "feast_feature_not_found_count_total"):
            for view in ("prices", "live_prices", "quotes"):
                line = next((x for x in text.splitlines() if x.startswith(f'{name}{{feature_view="{view}"}}')), None)
                out[(name, view)] = float(line.rsplit(" ", 1)[1]) if line else 0.0
        return out

    before = counts()
    response, _ = core.get_online_features(request)
    after = counts()
    delta = {key: after[key] - before[key] for key in after}
    # Independently of the plan: each view's columns by name, its misses counted in the response.
    names = response.feature_names
    by_view = {"prices": "prices__", "live_prices": "live_prices__", "quotes": "q__"}
    for view, prefix in by_view.items():
        columns = [i for i, n in enumerate(names) if n.startswith(prefix)]
        missing = sum(response.statuses[i].count(int(FieldStatus.NOT_FOUND)) for i in columns)
        assert delta[("feast_feature_request_count_total", view)] == 3 * len(columns)
        assert delta[("feast_feature_not_found_count_total", view)] == missing
    # prices: Z missing (3 features); live_prices: B and Z; quotes: (1, B) and (1, Z)
    assert [delta[("feast_feature_not_found_count_total", v)] for v in by_view] == [3, 2, 2]


def test_a_new_registry_version_gets_a_new_plan(store: FeatureStore) -> None:
    retriever = OnlineRetriever(store.registry, store.online_store, clock=NOW.timestamp)
    first = retriever.plan(store.snapshot(), ["prices:price"], False, ("commodity_code",))
    assert retriever.plan(store.snapshot(), ["prices:price"], False, ("commodity_code",)) is first
    assert first.reads[0].ttl_us == 86_400_000_000
    changed = FeatureView(name="prices", source=ticks, entities=[commodity], ttl=timedelta(days=2), schema=PRICE_FIELDS)
    store.apply([changed])
    snapshot = store.snapshot(allow_cache=False)
    assert snapshot.version != first.version
    second = retriever.plan(snapshot, ["prices:price"], False, ("commodity_code",))
    assert second is not first
    assert second.version == snapshot.version
    assert second.reads[0].ttl_us == 2 * 86_400_000_000


def test_plans_are_kept_per_request_shape(store: FeatureStore) -> None:
    retriever = OnlineRetriever(store.registry, store.online_store, clock=NOW.timestamp)
    snap = store.snapshot()
    short = retriever.plan(snap, ["prices:price"], False, ("commodity_code",))
    full = retriever.plan(snap, ["prices:price"], True, ("commodity_code",))
    wider = retriever.plan(snap, ["prices:price", "prices:note"], False, ("commodity_code",))
    assert short.feature_names == ("commodity_code", "price")
    assert full.feature_names == ("commodity_code", "prices__price")
    assert wider.dtypes == (String, Float64, String)
    assert len({id(short), id(full), id(wider)}) == 3
    assert len(retriever.plans) == 3
    assert Int64 not in short.dtypes


def test_redis_read_over_many_views_matches_view_by_view_reads() -> None:
    """All rows plain and present: one decode for every view; a null, a missing row, a bool or a
    second row count: the same values as reading each view alone."""
    import uuid

    from conformance.test_online_store import T0, make_view, rows
    from ladle.config import RepoConfig
    from ladle.online.base import ReadRequest
    from ladle.online.redis.store import RedisOnlineStore, RedisOnlineStoreConfig

    config = RepoConfig(project="plan", online_store=RedisOnlineStoreConfig(connection_string="127.0.0.1:6379"))
    redis = RedisOnlineStore(config)
    project = f"plan_{uuid.uuid4().hex[:8]}"
    views = [make_view(f"v{i}", [(f"f{i}_{j}", Float64) for j in range(3)]) for i in range(4)]
    flags = make_view("flags", [("on", Bool), ("x", Float64)])
    try:
        for i, view in enumerate(views):
            values = {f"f{i}_{j}": [float(i + j), None if (i, j) == (2, 1) else 1.0] for j in range(3)}
            codes = ["A", "B"] if i != 3 else ["A"]
            redis.write(
                project,
                view,
                rows(
                    view, {"commodity_code": codes}, {k: v[: len(codes)] for k, v in values.items()}, [T0] * len(codes)
                ),
            )
        redis.write(project, flags, rows(flags, {"commodity_code": ["A"]}, {"on": [True], "x": [2.0]}, [T0]))
        for codes, chosen in (
            (["A"], views[:2]),
            (["A", "B"], views[:2]),
            (["A", "B"], views),
            (["B", "A"], [*views, flags]),
        ):
            requests = [ReadRequest(v, v.feature_names, {"commodity_code": codes}) for v in chosen]
            together = redis.read(project, requests)
            alone = [redis.read(project, [r])[0] for r in requests]
            assert [(g.event_ts, g.values) for g in together] == [(g.event_ts, g.values) for g in alone]
        plain = redis.read(
            project, [ReadRequest(v, v.feature_names, {"commodity_code": ["B", "A"]}) for v in views[:2]]
        )
        assert [(g.event_ts, g.values) for g in plain] == [
            ([T0, T0], {f"f{i}_{j}": [1.0, float(i + j)] for j in range(3)}) for i in range(2)
        ]
        first = redis.read(project, [ReadRequest(views[2], ["f2_1", "f2_0"], {"commodity_code": ["A", "B"]})])[0]
        assert first.values == {"f2_1": [3.0, None], "f2_0": [2.0, 1.0]}
    finally:
        redis.teardown(project, [*views, flags])
        redis.close()


@pytest.mark.parametrize("codes", [["A"], ["B"], ["A", "B"], ["A", "B", "Z"]])
def test_encoders_give_the_same_bytes_with_the_plan(store: FeatureStore, codes: list[str]) -> None:
    """The plan's shortcuts (metadata once, a view of doubles in one struct call) change no byte."""
    from ladle.server.codec import online_response_json
    from ladle.server.wire import online_response_bytes, plan_response_bytes

    retriever = OnlineRetriever(store.registry, store.online_store, clock=NOW.timestamp)
    plan = retriever.plan(store.snapshot(), "many_views", True, ("commodity_code", "venue_id"))
    response = retriever.read(plan, {"commodity_code": codes, "venue_id": [1] * len(codes)}, len(codes))
    assert plan_response_bytes(response, plan) == online_response_bytes(response, plan.dtype_map())
    assert online_response_json(response, plan) == online_response_json(response)
