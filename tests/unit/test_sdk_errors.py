"""Mistakes a newcomer makes in the SDK get one line that names the fix."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from ladle import FeatureStore
from ladle.errors import ConfigError, FeatureServiceNotFoundError, InvalidFeatureReferenceError, RequestError

from .online_repo import T0, build


@pytest.fixture
def store(tmp_path: Path) -> Iterator[FeatureStore]:
    store = build(tmp_path)
    yield store
    store.close()


ENTITIES = pd.DataFrame({"commodity_code": ["A"], "event_timestamp": [T0]})


def test_a_feature_without_its_view_says_a_reference_is_view_feature(store: FeatureStore) -> None:
    for call in (
        lambda: store.get_online_features(features=["price"], entity_rows=[{"commodity_code": "A"}]),
        lambda: store.get_historical_features(entity_df=ENTITIES, features=["price"]).to_arrow(),
    ):
        with pytest.raises(InvalidFeatureReferenceError) as info:
            call()
        message = str(info.value)
        assert "'price' names no feature view: a reference is 'view:feature'" in message
        assert "'live_prices:price', 'prices:price'" in message  # the views that have such a feature
        assert "does not exist" not in message and "\n" not in message


def test_a_string_that_is_no_service_names_both_forms(store: FeatureStore) -> None:
    with pytest.raises(FeatureServiceNotFoundError) as info:
        store.get_online_features(features="prices:price", entity_rows=[{"commodity_code": "A"}])  # type: ignore[arg-type]
    message = str(info.value)
    assert "feature service 'prices:price' does not exist" in message
    assert "features given as one string name a feature service" in message
    assert "pass a list of 'view:feature' references (features=['prices:price'])" in message
    with pytest.raises(FeatureServiceNotFoundError, match="features given as one string name a feature service"):
        store.get_historical_features(entity_df=ENTITIES, features="prices:price").to_arrow()  # type: ignore[arg-type]
    # A string that is a service still works, as before.
    rows = [{"commodity_code": "A", "venue_id": 1}]
    response = store.get_online_features(features="model_v1", entity_rows=rows)  # type: ignore[arg-type]
    assert "price" in response.to_dict()


@pytest.mark.parametrize("query", ["SELECT commodity_code, event_timestamp FROM t", "  with x as (select 1) select *"])
def test_an_sql_entity_df_is_not_reported_as_a_missing_file(store: FeatureStore, query: str) -> None:
    with pytest.raises(RequestError) as info:
        store.get_historical_features(entity_df=query, features=["prices:price"]).to_arrow()
    assert "looks like an SQL query" in str(info.value)
    assert "does not exist" not in str(info.value)


def test_malformed_yaml_is_one_line_with_the_place(tmp_path: Path) -> None:
    (tmp_path / "feature_store.yaml").write_text("project: x\nregistry:\n  path: a.db\n   cache_ttl_seconds: 5\n")
    with pytest.raises(ConfigError) as info:
        FeatureStore(repo_path=tmp_path)
    message = str(info.value)
    assert "\n" not in message
    assert "not valid YAML" in message and "line 4" in message
