"""Feast saved datasets through ``ladle import-feast`` on hand-built registry messages (fast; no Feast needed).

The real-Feast side (a saved dataset made with Feast's own ``create_saved_dataset``) is in
test_import_feast.py; these pin the mapping, the reasons and the one-transaction write.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from feast_compat.test_import_mapping import _import, _registry, _view
from ladle import FeatureStore
from ladle.definitions.saved_dataset import SavedDataset, SavedDatasetFileStorage
from ladle.feast_import import map_registry
from ladle.retrieval.saved import SavedDatasetNotFoundError, read_saved_dataset

JAN1 = datetime(2026, 1, 1, tzinfo=UTC)
JAN2 = datetime(2026, 1, 2, 0, 0, 0, 5, tzinfo=UTC)


def _dataset(registry: Any, name: str, uri: str = "data/train.parquet", project: str = "p") -> Any:
    message = registry.saved_datasets.add()
    spec = message.spec
    spec.name, spec.project, spec.full_feature_names, spec.feature_service_name = name, project, True, "svc"
    spec.features.extend(["good:conv_rate"])
    spec.join_keys.append("driver_id")
    spec.tags["team"] = "ml"
    spec.storage.file_storage.uri = uri
    spec.storage.file_storage.file_format.parquet_format = b""
    message.meta.min_event_timestamp.seconds = int(JAN1.timestamp())
    message.meta.max_event_timestamp.seconds = int(JAN2.timestamp())
    message.meta.max_event_timestamp.nanos = 5000
    return message


def test_saved_datasets_map_field_by_field_and_the_rest_say_why() -> None:
    registry = _registry()
    _dataset(registry, "train")
    _dataset(registry, "warehouse").spec.storage.bigquery_storage = b"\x0a\x05a.b.c"
    _dataset(registry, "delta").spec.storage.file_storage.file_format.delta_format = b""
    _dataset(registry, "remote", uri="s3://bucket/train.parquet")
    _dataset(registry, "nowhere").spec.ClearField("storage")
    _dataset(registry, "elsewhere", project="other")
    reference = registry.validation_references.add()
    reference.name, reference.project = "ref", "p"
    report = map_registry(registry, "p")
    assert report.datasets == [
        SavedDataset(
            name="train", features=("good:conv_rate",), join_keys=("driver_id",),
            storage=SavedDatasetFileStorage("data/train.parquet"), full_feature_names=True,
            feature_service_name="svc", min_event_timestamp=JAN1, max_event_timestamp=JAN2, tags={"team": "ml"},
        )
    ]  # fmt: skip
    assert ("saved_dataset", "train") in report.imported
    reasons = {s.name: s.reason for s in report.skipped}
    assert "bigquery storage" in reasons["warehouse"]
    assert "Delta table" in reasons["delta"]
    assert "s3://bucket/train.parquet is remote" in reasons["remote"]
    assert "names no storage" in reasons["nowhere"]
    assert "elsewhere" not in reasons
    assert "pickled Python" in reasons["ref"] and "create_validation_reference" in reasons["ref"]


def _repo(tmp_path: Path) -> tuple[Path, Path]:
    repo = tmp_path / "repo"
    (repo / "data").mkdir(parents=True)
    (repo / "feature_store.yaml").write_text("project: p\nregistry: data/registry.db\n")
    trips = {"driver_id": [1], "conv_rate": [0.5], "ts": pa.array([0], pa.timestamp("s"))}
    pq.write_table(pa.table(trips), repo / "data" / "trips.parquet")
    rows = {"driver_id": [1, 2, 3], "good__conv_rate": [0.5, None, 0.7]}
    pq.write_table(pa.table(rows), repo / "data" / "train.parquet")
    return repo, tmp_path / "feast_registry.db"


def test_saved_datasets_are_written_in_the_applys_transaction(tmp_path: Path) -> None:
    repo, feast_file = _repo(tmp_path)
    registry = _registry()
    _view(registry, "good")
    _view(registry, "bad_column").features[0].name = "not_in_the_file"
    _dataset(registry, "train")
    feast_file.write_bytes(registry.SerializeToString())
    store = FeatureStore(repo_path=repo)
    try:
        failed = _import(repo, feast_file)
        assert failed.exit_code == 1 and "not_in_the_file" in failed.output, failed.output
        with pytest.raises(SavedDatasetNotFoundError):  # the failed apply wrote no dataset either
            store.get_saved_dataset("train")
        del registry.feature_views[1]
        feast_file.write_bytes(registry.SerializeToString())
        dry = _import(repo, feast_file, "--dry-run", "-o", "json")
        assert dry.exit_code == 0, dry.output
        assert {"kind": "saved_dataset", "name": "train"} in json.loads(dry.output)["imported"]
        with pytest.raises(SavedDatasetNotFoundError):
            store.get_saved_dataset("train")
        done = _import(repo, feast_file)
        assert done.exit_code == 0, done.output
        store.refresh_registry()
        assert store.registry.snapshot(allow_cache=False).version == 1  # views and dataset: one transaction
        dataset = store.get_saved_dataset("train")
        assert (dataset.row_count, dataset.tags, dataset.max_event_timestamp) == (3, {"team": "ml"}, JAN2)
        frame = read_saved_dataset(store.repo_path, dataset)
        assert frame["driver_id"].tolist() == [1, 2, 3] and frame["good__conv_rate"].isna().tolist() == [0, 1, 0]
    finally:
        store.close()


def test_a_directory_of_parquet_parts_imports_and_reads_as_one_table(tmp_path: Path) -> None:
    # Feast writes a directory of parts when the saved dataset's path does not end in .parquet
    repo, feast_file = _repo(tmp_path)
    parts = repo / "data" / "train_dir"
    parts.mkdir()
    pq.write_table(pa.table({"driver_id": [1, 2], "x": [0.1, 0.2]}), parts / "part-0.parquet")
    pq.write_table(pa.table({"driver_id": [3], "x": [0.3]}), parts / "part-1.parquet")
    registry = _registry()
    _view(registry, "good")
    _dataset(registry, "train_dir", uri="data/train_dir")
    feast_file.write_bytes(registry.SerializeToString())
    done = _import(repo, feast_file)
    assert done.exit_code == 0, done.output
    store = FeatureStore(repo_path=repo)
    try:
        dataset = store.get_saved_dataset("train_dir")
        assert dataset.row_count == 3
        frame = read_saved_dataset(store.repo_path, dataset)
        assert sorted(frame["driver_id"].tolist()) == [1, 2, 3]
    finally:
        store.close()
