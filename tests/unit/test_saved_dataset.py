"""Saved datasets, validation references and ``job.to_df(validation_reference=...)``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from ladle import FeatureStore
from ladle.definitions.saved_dataset import SavedDatasetFileStorage, Tolerances
from ladle.errors import ConflictError, ValidationFailed
from ladle.offline.validation import ValidationReport
from ladle.repo.loader import load_repo
from ladle.retrieval.saved import SavedDatasetNotFoundError
from unit.odfv_repo import build_odfv_repo

FEATURES = ["prices:current_price", "prices:volume_24h", "order_value:order_value"]
START = datetime(2024, 1, 6, tzinfo=UTC)


def entity_frame(codes: list[str], quantities: list[float]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "commodity_code": codes,
            "quantity": quantities,
            "event_timestamp": [START + timedelta(hours=i) for i in range(len(codes))],
        }
    )


TRAIN = entity_frame(["brent", "gold", "crude_oil_wti"] * 10, [float(i % 10 + 1) for i in range(30)])


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FeatureStore]:
    path: Path = tmp_path_factory.mktemp("saved_repo")
    s = build_odfv_repo(path)
    job = s.get_historical_features(TRAIN, FEATURES)
    s.create_saved_dataset(from_=job, name="train_v1", storage=SavedDatasetFileStorage(path="data/train_v1.parquet"))
    s.create_validation_reference("ref_v1", "train_v1", Tolerances(null_rate=0.05, range=0.1))
    yield s
    s.close()


def test_saved_dataset_is_registered_with_its_rows(store: FeatureStore) -> None:
    ds = store.get_saved_dataset("train_v1")
    assert ds.features == tuple(FEATURES)
    assert ds.join_keys == ("commodity_code",)
    assert ds.row_count == 30
    assert ds.min_event_timestamp == START and ds.max_event_timestamp == START + timedelta(hours=29)
    saved = pd.read_parquet(store.repo_path / "data" / "train_v1.parquet")
    assert list(saved.columns) == ["commodity_code", "quantity", "event_timestamp", "current_price", "volume_24h",
                                   "order_value"]  # fmt: skip
    assert [v.version for v in store.history("saved_dataset", "train_v1")] == [1]
    with pytest.raises(ConflictError, match="allow_overwrite"):
        store.create_saved_dataset(
            from_=store.get_historical_features(TRAIN, FEATURES), name="train_v1",
            storage=SavedDatasetFileStorage(path="data/other.parquet"),
        )  # fmt: skip
    with pytest.raises(SavedDatasetNotFoundError):
        store.get_saved_dataset("nope")


def test_a_like_frame_passes_and_a_drifted_one_fails_with_a_report(store: FeatureStore) -> None:
    reference = store.get_validation_reference("ref_v1")
    same = store.get_historical_features(TRAIN.iloc[:20], FEATURES)  # a sample of the reference's rows
    assert len(same.to_df(validation_reference=reference)) == 20
    drifted = store.get_historical_features(entity_frame(["gold", "silver"] * 5, [400.0, 500.0] * 5), FEATURES)
    with pytest.raises(ValidationFailed) as info:
        drifted.to_df(validation_reference=reference)
    report = info.value.report
    assert isinstance(report, ValidationReport) and not report.ok
    failed = {(f.column, f.check) for f in report.findings}
    assert {("quantity", "range"), ("quantity", "mean"), ("order_value", "range")} <= failed
    assert ("commodity_code", "categories") in failed  # 'silver' was never seen
    assert ("current_price", "null rate") in failed  # silver has no price: half the rows are null
    assert ("volume_24h", "null rate") in failed


def test_validate_by_name_and_apply_keeps_records(store: FeatureStore) -> None:
    assert store.validate(pd.read_parquet(store.repo_path / "data" / "train_v1.parquet"), "ref_v1").ok
    store.apply(load_repo(store.repo_path), partial=False)  # what `ladle apply` does
    assert store.get_saved_dataset("train_v1").row_count == 30
    assert store.get_validation_reference("ref_v1").dataset_name == "train_v1"


def test_cli_validate(store: FeatureStore, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from ladle.cli.main import cli

    base = ["-c", str(store.repo_path), "validate", "-r", "ref_v1"]
    ok = CliRunner().invoke(cli, [*base, "--dataset", "train_v1"])
    assert ok.exit_code == 0, ok.output
    assert "ok" in ok.output
    drifted = store.get_historical_features(entity_frame(["gold"] * 4, [900.0] * 4), FEATURES).to_df()
    drifted.to_parquet(tmp_path / "drifted.parquet")
    bad = CliRunner().invoke(cli, [*base, str(tmp_path / "drifted.parquet"), "-o", "json"])
    assert bad.exit_code == 1
    report = json.loads(bad.output)
    assert not report["ok"] and {"column": "quantity", "check": "range"} in [
        {"column": f["column"], "check": f["check"]} for f in report["findings"]
    ]
    neither = CliRunner().invoke(cli, base)
    assert neither.exit_code == 1 and "one of the two" in neither.output and "Traceback" not in neither.output
