"""On-demand feature views through the SDK: definitions, registry, apply checks, online and historical."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from ladle import (
    Entity,
    FeatureStore,
    FeatureView,
    Field,
    FieldStatus,
    FileSource,
    Float64,
    OnDemandFeatureView,
    RequestSource,
    ValueType,
)
from ladle.errors import DefinitionError, RequestDataNotFoundError
from ladle.repo.loader import load_repo
from unit.odfv_repo import DEFINITIONS, PRICES, build_odfv_repo

ROWS = [{"commodity_code": "brent", "quantity": 2.0}, {"commodity_code": "nope", "quantity": 500.0}]
FEATURES = [
    "prices:volume_24h",
    "order_value:order_value",
    "order_value_py:order_value_py",
    "big_order:big_order",
]


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("odfv_repo")
    build_odfv_repo(path).close()
    yield path


@pytest.fixture
def store(repo: Path) -> Iterator[FeatureStore]:
    s = FeatureStore(repo_path=repo)
    yield s
    s.close()


def test_registry_keeps_odfvs_as_their_own_kind_with_source_text(store: FeatureStore) -> None:
    snapshot = store.snapshot(allow_cache=False)
    assert sorted(snapshot.on_demand_feature_views) == ["big_order", "order_value", "order_value_py"]
    odfv = snapshot.on_demand_feature_views["order_value"]
    assert odfv.udf.fn is None  # read back from the registry: compiled from the stored text on first use
    assert odfv.udf.source.startswith("def order_value(")
    assert "@on_demand_feature_view" not in odfv.udf.source
    assert "import pandas as pd" in odfv.udf.imports
    assert [v.version for v in store.history("on_demand_feature_view", "order_value")] == [1]
    assert isinstance(snapshot.data_sources["order"], RequestSource)


def test_online_pandas_python_and_singleton_modes(store: FeatureStore) -> None:
    response = store.get_online_features(FEATURES, ROWS)
    got = response.to_dict()
    price = PRICES["brent"]
    assert list(got) == ["commodity_code", "volume_24h", "order_value", "order_value_py", "big_order"]
    assert got["commodity_code"] == ["brent", "nope"]
    assert got["order_value"] == [price * 2.0, None]
    assert got["order_value_py"] == [price * 2.0, None]
    assert got["big_order"] == [False, True]
    statuses = response.statuses_dict()
    assert statuses["order_value"] == [FieldStatus.PRESENT, FieldStatus.NULL_VALUE]
    assert statuses["volume_24h"][1] == FieldStatus.NOT_FOUND


def test_online_full_names_and_bare_odfv_reference(store: FeatureStore) -> None:
    got = store.get_online_features(
        ["order_value", "prices:current_price"], ROWS[:1], full_feature_names=True
    ).to_dict()
    assert list(got) == ["commodity_code", "prices__current_price", "order_value__order_value", "order_value__price_x2"]
    assert got["order_value__price_x2"] == [PRICES["brent"] * 2]


def test_online_request_only_odfv_needs_no_store_read(store: FeatureStore) -> None:
    got = store.get_online_features(["big_order:big_order"], {"quantity": [1.0, 101.0, 100.0]}).to_dict()
    assert got == {"big_order": [False, True, False]}


def test_missing_request_field_is_a_typed_error(store: FeatureStore) -> None:
    with pytest.raises(RequestDataNotFoundError, match="'quantity'"):
        store.get_online_features(["order_value:order_value"], [{"commodity_code": "brent"}])


def test_vectorized_over_many_rows(store: FeatureStore) -> None:
    codes = list(PRICES) * 100
    rows = {"commodity_code": codes, "quantity": [float(i) for i in range(len(codes))]}
    got = store.get_online_features(["order_value_py:order_value_py"], rows).to_dict()
    assert got["order_value_py"] == [PRICES[c] * i for i, c in enumerate(codes)]


def test_historical_applies_odfvs_with_request_columns_from_the_entity_frame(store: FeatureStore) -> None:
    entity_df = pd.DataFrame(
        {
            "commodity_code": ["brent", "gold", "brent"],
            "quantity": [3.0, 1.0, 4.0],
            "event_timestamp": [
                datetime(2024, 1, 6, tzinfo=UTC), datetime(2024, 1, 6, tzinfo=UTC), datetime(2024, 1, 1, tzinfo=UTC),
            ],
        }
    )  # fmt: skip
    df = store.get_historical_features(entity_df, ["order_value:order_value", "prices:volume_24h"]).to_df()
    assert list(df.columns) == ["commodity_code", "quantity", "event_timestamp", "volume_24h", "order_value"]
    by_row = df.sort_values(["commodity_code", "event_timestamp"]).reset_index(drop=True)
    values = by_row["order_value"].tolist()
    assert values[0] is None or pd.isna(values[0])  # before the first price: no input, no output
    assert values[1:] == [PRICES["brent"] * 3.0, PRICES["gold"] * 1.0]
    with pytest.raises(RequestDataNotFoundError):
        store.get_historical_features(entity_df.drop(columns=["quantity"]), ["order_value:order_value"]).to_df()


def test_apply_dry_runs_the_stored_function(tmp_path: Path, repo: Path) -> None:
    broken = DEFINITIONS.replace('out["price_x2"] = inputs["prices__current_price"] * 2', 'out["price_y"] = 1')
    with pytest.raises(DefinitionError, match=r"did not return its schema columns \['price_x2'\]"):
        build_odfv_repo(tmp_path / "broken", broken)
    # A view that is not registered (and not applied with it): refused, nothing written.
    other = FeatureView(
        name="other", entities=[Entity(name="e", join_keys=["k"], value_type=ValueType.STRING)],
        schema=[Field(name="x", dtype=Float64)], source=FileSource(path="nowhere.parquet", timestamp_field="ts"),
    )  # fmt: skip
    odfv = OnDemandFeatureView(name="uses_other", schema=[Field(name="y", dtype=Float64)], sources=[other], udf=_double)
    store = FeatureStore(repo_path=repo)
    try:
        before = store.snapshot(allow_cache=False).version
        with pytest.raises(DefinitionError, match="reads feature view 'other', which does not exist"):
            store.apply([odfv])
        assert store.snapshot(allow_cache=False).version == before
    finally:
        store.close()


def _double(inputs: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"y": inputs["x"] * 2})


def test_changed_function_is_a_new_version(tmp_path: Path) -> None:
    store = build_odfv_repo(tmp_path)
    try:
        (tmp_path / "definitions.py").write_text(DEFINITIONS.replace("* 2\n", "* 3\n"))
        result = store.apply(load_repo(tmp_path), partial=False)
        assert [(d.kind, d.name, d.action) for d in result.diffs] == [
            ("on_demand_feature_view", "order_value", "change")
        ]
        got = store.get_online_features(["order_value:price_x2"], [{"commodity_code": "gold", "quantity": 1.0}])
        assert got.to_dict()["price_x2"] == [PRICES["gold"] * 3]
    finally:
        store.close()


def test_definition_errors() -> None:
    order = RequestSource(name="o", schema=[Field(name="q", dtype=Float64)])

    def fn(inputs: pd.DataFrame) -> pd.DataFrame:
        return inputs

    with pytest.raises(DefinitionError, match="mode must be"):
        OnDemandFeatureView(name="x", schema=[Field(name="y", dtype=Float64)], sources=[order], udf=fn, mode="spark")  # type: ignore[arg-type]
    with pytest.raises(DefinitionError, match="sources must"):
        OnDemandFeatureView(name="x", schema=[Field(name="y", dtype=Float64)], sources=["nope"], udf=fn)  # type: ignore[list-item]
    with pytest.raises(DefinitionError, match="named function"):
        OnDemandFeatureView(name="x", schema=[Field(name="y", dtype=Float64)], sources=[order], udf=lambda d: d)
    with pytest.raises(DefinitionError, match="non-empty"):
        RequestSource(name="r", schema=[])


def test_feature_services_hold_odfvs_and_their_projections(tmp_path: Path) -> None:
    definitions = (
        DEFINITIONS
        + """

from ladle import FeatureService

order_model = FeatureService(
    name="order_model", features=[prices[["volume_24h"]], order_value[["order_value"]], big_order]
)
"""
    )
    store = build_odfv_repo(tmp_path, definitions)
    try:
        got = store.get_online_features("order_model", ROWS).to_dict()
        assert (
            got
            == store.get_online_features(
                ["prices:volume_24h", "order_value:order_value", "big_order:big_order"], ROWS
            ).to_dict()
        )
        assert got["order_value"] == [PRICES["brent"] * 2.0, None]
        service = store.get_feature_service("order_model")
        entity_df = pd.DataFrame(
            {"commodity_code": ["gold"], "quantity": [3.0], "event_timestamp": [datetime(2024, 1, 6, tzinfo=UTC)]}
        )
        df = store.get_historical_features(entity_df, service).to_df()
        assert df["order_value"].tolist() == [PRICES["gold"] * 3.0]
        assert df["big_order"].tolist() == [False]
    finally:
        store.close()


def test_async_reads_and_vector_search_refusal(store: FeatureStore) -> None:
    import asyncio

    from ladle.errors import UnsupportedFeatureError

    async def both() -> list[dict[str, list[object]]]:
        answers = await asyncio.gather(*(store.get_online_features_async(FEATURES, ROWS) for _ in range(5)))
        return [a.to_dict() for a in answers]

    assert asyncio.run(both()) == [store.get_online_features(FEATURES, ROWS).to_dict()] * 5
    with pytest.raises(UnsupportedFeatureError, match="vector search"):
        store.retrieve_online_documents(features=["prices:current_price"], query=[0.1, 0.2], top_k=3)


def test_a_whole_view_whose_features_come_from_its_source(tmp_path: Path) -> None:
    schema = '    schema=[Field(name="current_price", dtype=Float64), Field(name="volume_24h", dtype=Int64)],\n'
    assert schema in DEFINITIONS
    definitions = DEFINITIONS.replace(schema, "").replace('prices[["current_price"]]', "prices")
    store = build_odfv_repo(tmp_path, definitions)
    try:
        inputs = store.snapshot(allow_cache=False).on_demand_feature_views["order_value"].view_inputs
        assert inputs[0].features == ("current_price", "volume_24h")
        got = store.get_online_features(["order_value:order_value"], ROWS[:1]).to_dict()
        assert got["order_value"] == [PRICES["brent"] * 2.0]
    finally:
        store.close()


def test_cli_types_request_fields_by_their_schema(repo: Path) -> None:
    from click.testing import CliRunner

    from ladle.cli.main import cli

    args = ["-c", str(repo), "get-online-features", "-f", "order_value:order_value,big_order:big_order"]
    ok = CliRunner().invoke(cli, [*args, "-e", "commodity_code=gold", "-e", "quantity=2.5", "-o", "json"])
    assert ok.exit_code == 0, ok.output
    body = json.loads(ok.output)
    names = body["metadata"]["feature_names"]
    assert body["results"][names.index("order_value")]["values"] == [PRICES["gold"] * 2.5]
    bad = CliRunner().invoke(cli, [*args, "-e", "commodity_code=gold", "-e", "quantity=lots"])
    assert bad.exit_code == 1
    assert "quantity" in bad.output and "Traceback" not in bad.output


WRITING = """

@on_demand_feature_view(
    sources=[prices],
    schema=[Field(name="price_doubled", dtype=Float64)],
    mode="python",
    write_to_online_store=True,
)
def price_doubled(inputs: dict) -> dict:
    return {"price_doubled": [None if p is None else p * 2 for p in inputs["current_price"]]}
"""


def test_write_to_online_store_computes_on_write_and_serves_stored_values(tmp_path: Path) -> None:
    from ladle.online.base import ReadRequest
    from ladle.types import FieldStatus

    store = build_odfv_repo(tmp_path, DEFINITIONS + WRITING)  # applies, then materializes
    try:
        snapshot = store.snapshot(allow_cache=False)
        stored = snapshot.on_demand_feature_views["price_doubled"].stored_view(snapshot.feature_views)
        keys = {"commodity_code": ["gold", "brent"]}
        rows = store.online_store.read(snapshot.project, [ReadRequest(stored, ["price_doubled"], keys)])[0]
        assert rows.values["price_doubled"] == [PRICES["gold"] * 2, PRICES["brent"] * 2]  # stored by materialize
        got = store.get_online_features(["price_doubled:price_doubled", "order_value:order_value"], ROWS)
        assert got.to_dict()["price_doubled"] == [PRICES["brent"] * 2, None]
        assert got.statuses_dict()["price_doubled"] == [FieldStatus.PRESENT, FieldStatus.NOT_FOUND]
        now = datetime.now(UTC)
        store.write_to_online_store(
            "prices",
            {"commodity_code": ["brent"], "current_price": [10.0], "volume_24h": [1], "event_timestamp": [now]},
        )
        assert store.get_online_features(["price_doubled"], ROWS[:1]).to_dict()["price_doubled"] == [20.0]
        entity_df = pd.DataFrame({"commodity_code": ["gold"], "event_timestamp": [datetime(2024, 1, 6, tzinfo=UTC)]})
        df = store.get_historical_features(entity_df, ["price_doubled:price_doubled"]).to_df()
        assert df["price_doubled"].tolist() == [PRICES["gold"] * 2]  # offline: computed over the frame
    finally:
        store.close()
    refused = WRITING.replace("sources=[prices]", "sources=[prices, order]")
    with pytest.raises(DefinitionError, match="exactly one feature view source and no RequestSource"):
        build_odfv_repo(tmp_path / "refused", DEFINITIONS + refused)


def test_stored_function_loads_where_an_import_of_its_file_is_missing() -> None:
    from ladle.definitions.transform_udf import TransformUdf

    udf = TransformUdf(
        name="f",
        source="def f(inputs):\n    return {'y': [math.sqrt(v) for v in inputs['x']]}\n",
        imports="import math\nfrom feast_is_not_installed_here import FeatureView\n",
        sha256="0",
    )
    assert udf.load()({"x": [4.0]}) == {"y": [2.0]}
    needs = TransformUdf(name="g", source="def g(inputs):\n    return FeatureView\n", imports=udf.imports, sha256="0")
    with pytest.raises(NameError):
        needs.load()({})
