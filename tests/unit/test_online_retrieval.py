"""``get_online_features``: entity row forms, statuses and ttl, naming, caching, every bad input."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from ladle import FeatureStore, FieldStatus
from ladle.errors import (
    EntityKeyError,
    FeatureNameCollisionError,
    FeatureNotFoundError,
    FeatureServiceNotFoundError,
    FeatureViewNotFoundError,
    InvalidFeatureReferenceError,
    RequestError,
    VersionNotFoundError,
)
from ladle.online.base import ReadRequest, ViewRows
from ladle.retrieval import online as online_module
from ladle.retrieval.online import OnlineRetriever, entities_from_text

from .online_repo import TS, build, prices

PRESENT, NULL, NOT_FOUND, OUTSIDE = (
    FieldStatus.PRESENT,
    FieldStatus.NULL_VALUE,
    FieldStatus.NOT_FOUND,
    FieldStatus.OUTSIDE_MAX_AGE,
)
NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
NOW_US = int(NOW.timestamp() * 1_000_000)


def us(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FeatureStore]:
    """The repo with hand-written online rows (not materialized: these tests are about reads)."""
    st = build(tmp_path_factory.mktemp("online"))
    snap = st.snapshot()
    fresh, stale = NOW - timedelta(hours=1), NOW - timedelta(days=2)
    rows = pa.table(
        {
            "commodity_code": ["A", "B", "S"],
            "price": [1.5, 2.5, 9.0],
            "volume": pa.array([10, None, 90], pa.int64()),
            "note": ["a", "b", None],
            "event_timestamp": pa.array([fresh, fresh, stale], TS),
        }
    )
    st.online_store.write(st.project, snap.feature_view("prices"), rows)
    st.online_store.write(st.project, snap.feature_view("live_prices"), rows)
    quotes = pa.table(
        {
            "venue_id": pa.array([1, 2], pa.int64()),
            "commodity_code": ["A", "A"],
            "bid": [10.0, 20.0],
            "event_timestamp": pa.array([fresh, stale], TS),
        }
    )
    st.online_store.write(st.project, snap.feature_view("quotes"), quotes)
    yield st
    st.close()


@pytest.fixture
def retriever(store: FeatureStore) -> OnlineRetriever:
    return OnlineRetriever(store.registry, store.online_store, clock=NOW.timestamp)


def columns(resp: Any) -> dict[str, tuple[list[Any], list[int], list[int]]]:
    return {
        n: (v, s, t)
        for n, v, s, t in zip(resp.feature_names, resp.values, resp.statuses, resp.event_timestamps, strict=True)
    }


# -- entity row forms -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "rows",
    [
        [{"commodity_code": "A"}, {"commodity_code": "Z"}],
        {"commodity_code": ["A", "Z"]},
        {"commodity_code": np.array(["A", "Z"])},
        {"commodity_code": pd.Series(["A", "Z"])},
        pd.DataFrame({"commodity_code": ["A", "Z"]}),
    ],
    ids=["records", "columns", "numpy", "series", "dataframe"],
)
def test_every_entity_row_form(retriever: OnlineRetriever, rows: Any) -> None:
    resp = retriever.get_online_features(["prices:price", "prices:volume"], rows)
    assert resp.feature_names == ["commodity_code", "price", "volume"]
    assert resp.values == [["A", "Z"], [1.5, None], [10, None]]
    assert resp.statuses == [[PRESENT, PRESENT], [PRESENT, NOT_FOUND], [PRESENT, NOT_FOUND]]
    assert resp.event_timestamps[0] == [0, 0]
    assert resp.event_timestamps[1] == [us(NOW - timedelta(hours=1)), 0]


def test_int_keys_from_numpy_and_dataframe(retriever: OnlineRetriever) -> None:
    frame = pd.DataFrame({"venue_id": np.array([2, 1], dtype=np.int64), "commodity_code": ["A", "A"]})
    resp = retriever.get_online_features(["quotes:bid"], frame)
    assert resp.values[:2] == [[2, 1], ["A", "A"]]
    assert all(type(v) is int for v in resp.values[0])
    by_name = columns(resp)
    assert by_name["bid"][0] == [20.0, 10.0]


# -- statuses and ttl -------------------------------------------------------------------------------


def test_statuses(retriever: OnlineRetriever) -> None:
    resp = retriever.get_online_features(["prices:volume", "prices:note"], {"commodity_code": ["A", "B", "S", "Z"]})
    got = columns(resp)
    fresh, stale = us(NOW - timedelta(hours=1)), us(NOW - timedelta(days=2))
    # B has a stored null volume; S is older than the 1-day ttl; Z was never written.
    assert got["volume"] == ([10, None, None, None], [PRESENT, NULL, OUTSIDE, NOT_FOUND], [fresh, fresh, stale, 0])
    assert got["note"] == (["a", "b", None, None], [PRESENT, PRESENT, OUTSIDE, NOT_FOUND], [fresh, fresh, stale, 0])


def test_ttl_zero_never_expires(retriever: OnlineRetriever) -> None:
    resp = retriever.get_online_features(["live_prices:price"], {"commodity_code": ["S"]})
    assert columns(resp)["price"][:2] == ([9.0], [PRESENT])


def test_ttl_boundary_follows_the_clock(store: FeatureStore) -> None:
    event = us(NOW - timedelta(days=2))
    ttl_us = 24 * 3600 * 1_000_000

    def status_at(now_us: int) -> int:
        r = OnlineRetriever(store.registry, store.online_store, clock=lambda: now_us / 1_000_000)
        return r.get_online_features(["prices:price"], {"commodity_code": ["S"]}).statuses[1][0]

    assert status_at(event + ttl_us) == PRESENT  # exactly ttl old: still valid
    assert status_at(event + ttl_us + 1) == OUTSIDE


def test_stored_null_is_null_value_not_not_found(retriever: OnlineRetriever) -> None:
    resp = retriever.get_online_features(["live_prices:note"], {"commodity_code": ["S", "Z"]})
    assert columns(resp)["note"][:2] == ([None, None], [NULL, NOT_FOUND])


# -- naming and references --------------------------------------------------------------------------


def test_bare_view_name_means_all_features(retriever: OnlineRetriever) -> None:
    resp = retriever.get_online_features(["prices"], {"commodity_code": ["A"]})
    assert resp.feature_names == ["commodity_code", "price", "volume", "note"]


def test_full_feature_names(retriever: OnlineRetriever) -> None:
    resp = retriever.get_online_features(
        ["prices:price", "live_prices:price"], {"commodity_code": ["A"]}, full_feature_names=True
    )
    assert resp.feature_names == ["commodity_code", "prices__price", "live_prices__price"]
    assert resp.values[1:] == [[1.5], [1.5]]


def test_name_collision_without_full_names(retriever: OnlineRetriever) -> None:
    with pytest.raises(FeatureNameCollisionError):
        retriever.get_online_features(["prices:price", "live_prices:price"], {"commodity_code": ["A"]})


def test_join_keys_first_in_request_order_and_extra_columns_dropped(retriever: OnlineRetriever) -> None:
    rows = {"commodity_code": ["A", "A"], "label": [1, 0], "venue_id": [2, 1]}
    resp = retriever.get_online_features(["quotes:bid", "prices:price"], rows)
    assert resp.feature_names == ["commodity_code", "venue_id", "bid", "price"]
    assert resp.values[2:] == [[20.0, 10.0], [1.5, 1.5]]  # quotes has no ttl: the old bid is PRESENT
    assert resp.statuses[2] == [PRESENT, PRESENT]


def test_composite_key_values(retriever: OnlineRetriever) -> None:
    resp = retriever.get_online_features(["quotes:bid"], {"venue_id": [1, 2, 3], "commodity_code": ["A", "A", "A"]})
    assert columns(resp)["bid"][:2] == ([10.0, 20.0, None], [PRESENT, PRESENT, NOT_FOUND])


def test_feature_service(retriever: OnlineRetriever, store: FeatureStore) -> None:
    rows = {"commodity_code": ["A"], "venue_id": [1]}
    by_name = retriever.get_online_features("model_v1", rows, full_feature_names=True)
    by_object = retriever.get_online_features(store.get_feature_service("model_v1"), rows, full_feature_names=True)
    assert by_name.feature_names == ["commodity_code", "venue_id", "prices__price", "q__bid"]
    assert by_name.values == by_object.values == [["A"], [1], [1.5], [10.0]]


def test_through_the_feature_store(store: FeatureStore) -> None:
    resp = store.get_online_features(["live_prices:price"], [{"commodity_code": "B"}])
    assert resp.to_dict() == {"commodity_code": ["B"], "price": [2.5]}


def test_empty_request(retriever: OnlineRetriever) -> None:
    resp = retriever.get_online_features(["prices:price"], {"commodity_code": []})
    assert resp.feature_names == ["commodity_code", "price"]
    assert resp.values == [[], []]


# -- bad input ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("features", "rows", "error"),
    [
        (["prices:price"], {"venue_id": [1]}, EntityKeyError),  # missing join key
        (["quotes:bid"], {"commodity_code": ["A"]}, EntityKeyError),  # one of two keys missing
        (["prices:price"], {"commodity_code": [1]}, EntityKeyError),  # int for a String key
        (["quotes:bid"], {"commodity_code": ["A"], "venue_id": ["1"]}, EntityKeyError),  # str for Int64
        (["quotes:bid"], {"commodity_code": ["A"], "venue_id": [True]}, EntityKeyError),  # bool for Int64
        (["quotes:bid"], {"commodity_code": ["A"], "venue_id": [1.0]}, EntityKeyError),  # float for Int64
        (["quotes:bid"], {"commodity_code": ["A", "B"], "venue_id": [1]}, EntityKeyError),  # lengths differ
        (["prices:price"], {"commodity_code": "A"}, EntityKeyError),  # a scalar, not a column
        (["prices:price"], [{"commodity_code": "A"}, {"other": 1}], EntityKeyError),  # a row lacks the key
        (["prices:price"], "commodity_code=A", EntityKeyError),  # not rows at all
        (["nope:price"], {"commodity_code": ["A"]}, FeatureViewNotFoundError),
        (["prices:nope"], {"commodity_code": ["A"]}, FeatureNotFoundError),
        (["prices:price:x"], {"commodity_code": ["A"]}, InvalidFeatureReferenceError),
        (["prices@v2:price"], {"commodity_code": ["A"]}, VersionNotFoundError),  # a pin of a version never stored
        (["prices@2:price"], {"commodity_code": ["A"]}, InvalidFeatureReferenceError),  # a malformed pin
        ([""], {"commodity_code": ["A"]}, InvalidFeatureReferenceError),
        ([3], {"commodity_code": ["A"]}, InvalidFeatureReferenceError),
        ([["prices:price"]], {"commodity_code": ["A"]}, InvalidFeatureReferenceError),
        (42, {"commodity_code": ["A"]}, InvalidFeatureReferenceError),
        ([], {"commodity_code": ["A"]}, RequestError),
        ("no_such_service", {"commodity_code": ["A"]}, FeatureServiceNotFoundError),
    ],
)
def test_bad_input(retriever: OnlineRetriever, features: Any, rows: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        retriever.get_online_features(features, rows)


# -- the hot path ---------------------------------------------------------------------------------------


class CountingStore:
    """Delegates to the real store, counting read calls."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.reads: list[list[ReadRequest]] = []

    def read(self, project: str, requests: list[ReadRequest]) -> list[ViewRows]:
        self.reads.append(list(requests))
        result: list[ViewRows] = self.inner.read(project, requests)
        return result


def test_one_store_read_for_all_views(store: FeatureStore) -> None:
    counting = CountingStore(store.online_store)
    r = OnlineRetriever(store.registry, counting, clock=NOW.timestamp)  # type: ignore[arg-type]
    r.get_online_features(
        ["prices:price", "live_prices:volume", "quotes:bid"], {"commodity_code": ["A"], "venue_id": [1]}, True
    )
    assert len(counting.reads) == 1
    assert [req.view.name for req in counting.reads[0]] == ["prices", "live_prices", "quotes"]


def test_references_resolved_once_per_shape_and_version(store: FeatureStore, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Any] = []
    real = online_module.resolve

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(args[1])
        return real(*args, **kwargs)

    monkeypatch.setattr(online_module, "resolve", counting)
    r = OnlineRetriever(store.registry, store.online_store, clock=NOW.timestamp)
    for code in ("A", "B", "Z"):
        r.get_online_features(["prices:price"], [{"commodity_code": code}])
    assert len(calls) == 1
    r.get_online_features(["prices:price"], {"commodity_code": ["A"], "extra": [1]})  # another shape
    assert len(calls) == 2

    class Bumped:
        def snapshot(self, *, allow_cache: bool = True) -> Any:
            snap = store.registry.snapshot()
            return type(snap)(snap.project, snap.version + 1, snap.entities, snap.data_sources, snap.feature_views)

    r.registry = Bumped()
    r.get_online_features(["prices:price"], [{"commodity_code": "A"}])
    assert len(calls) == 3


def test_view_changes_are_seen_after_apply(tmp_path: Path) -> None:
    st = build(tmp_path)
    st.online_store.write(
        st.project,
        st.snapshot().feature_view("live_prices"),
        pa.table({"commodity_code": ["A"], "price": [1.0], "event_timestamp": pa.array([NOW], TS)}),
    )
    assert st.get_online_features(["live_prices"], {"commodity_code": ["A"]}).feature_names[-1] == "note"
    from ladle import Field, Float64
    from ladle.definitions import FeatureView

    changed = FeatureView(
        name="live_prices",
        source=prices.source,
        entities=prices.entities,
        schema=[Field(name="price", dtype=Float64)],
    )
    st.apply([changed])
    resp = st.get_online_features(["live_prices"], {"commodity_code": ["A"]})
    assert resp.feature_names == ["commodity_code", "price"]
    assert resp.values[1] == [1.0]
    st.close()


def test_entities_from_text(store: FeatureStore) -> None:
    snap = store.snapshot()
    got = entities_from_text(
        snap, ["quotes:bid"], [("commodity_code", "A"), ("venue_id", "2"), ("commodity_code", "B"), ("venue_id", "1")]
    )
    assert got == {"commodity_code": ["A", "B"], "venue_id": [2, 1]}
    with pytest.raises(EntityKeyError):
        entities_from_text(snap, ["quotes:bid"], [("commodity_code", "A"), ("venue_id", "two")])


def test_view_without_entities(tmp_path: Path) -> None:
    """Feast's entityless view: one row (dummy key ""), the same values for every entity row."""
    from ladle import Field, Float64
    from ladle.definitions import FeatureView

    st = build(tmp_path)
    market = FeatureView(name="market", source=prices.source, schema=[Field(name="price", dtype=Float64)])
    st.apply([market])
    written = st.write_to_online_store(
        "market", {"price": [1.0, 2.0], "event_timestamp": [NOW - timedelta(hours=2), NOW - timedelta(hours=1)]}
    )
    assert written == 2
    resp = st.get_online_features(["market:price", "live_prices:price"], {"commodity_code": ["A", "B"]}, True)
    assert resp.feature_names == ["commodity_code", "market__price", "live_prices__price"]
    assert resp.values[1] == [2.0, 2.0]
    assert st.get_online_features(["market"], [{}]).values == [[2.0]]
    st.close()
