"""Drift on a real repo (SQLite registry, Parquet + DuckDB offline): baselines, windows, decisions, reports."""

from __future__ import annotations

import math
from datetime import timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from ladle import FeatureStore, FeatureView, Field, FileSource, Float64
from ladle.errors import DefinitionError, ObjectNotFoundError, RequestError
from ladle.monitor.baseline import build_baseline, profile
from ladle.monitor.drift import Thresholds, compare_feature, thresholds_for
from ladle.monitor.drift_run import compare, run_drift, served_window
from ladle.monitor.drift_stats import chi2_homogeneity, chi2_sf, gammaincc, kolmogorov_sf, ks_2samp, psi
from ladle.registry.reports import ReportJournal

from .drift_repo import T0, TS, build, monitor_sample, reading_rows, readings

BASE_ROWS = 2000
CALM = T0 + timedelta(days=10)  # same distributions as the baseline, other seed
SHIFTED = T0 + timedelta(days=20)  # level +0.8 sd, count lambda 5 -> 7, kinds mixed the other way round
WINDOW = timedelta(minutes=600)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> FeatureStore:
    root = tmp_path_factory.mktemp("drift")
    base = reading_rows(T0, BASE_ROWS, seed=1)
    store = build(root, base)
    store.offline_store.append(readings.batch_source, reading_rows(CALM, 600, seed=2))
    shifted = reading_rows(SHIFTED, 600, seed=3, mu=0.8, lam=7.0, kind_weights=(0.1, 0.2, 0.3, 0.4))
    store.offline_store.append(readings.batch_source, shifted)
    entity_df = base.select(["sensor_id", "event_timestamp"])
    job = store.get_historical_features(entity_df, feature_service="readings_model")
    saved = store.save_drift_baseline(job, "training_march", features="readings_model")
    assert sorted(saved.features) == ["readings:count", "readings:kind", "readings:level"]
    return store


def test_statistics_match_closed_forms() -> None:
    assert chi2_sf(3.0, 2) == pytest.approx(math.exp(-1.5), rel=1e-12)  # dof 2: exp(-x/2)
    assert gammaincc(1.0, 2.5) == pytest.approx(math.exp(-2.5), rel=1e-12)
    assert gammaincc(3.0, 40.0) == pytest.approx(math.exp(-40) * (1 + 40 + 800), rel=1e-9)
    assert kolmogorov_sf(0.0) == 1.0 and kolmogorov_sf(3.0) < 1e-7
    same = np.arange(100, dtype=np.float64)
    assert ks_2samp(same, same.copy()) == (0.0, 1.0)
    d, p = ks_2samp(same, same + 1000.0)
    assert d == 1.0 and p < 1e-10
    assert psi([10, 20, 30], [1, 2, 3]) == pytest.approx(0.0)
    assert psi([50, 50], [90, 10]) > 0.25
    assert chi2_homogeneity([10, 10], [10, 10]) == (0.0, 1.0)
    assert chi2_homogeneity([100, 0], [0, 100])[1] < 1e-20


def test_profiles_bin_with_quantiles_and_count_nulls() -> None:
    values = pa.array([*range(100), None, float("nan")], pa.float64())
    numeric = profile(values, bins=4)
    assert numeric is not None and numeric.type == "numeric"
    assert (numeric.count, numeric.nulls) == (100, 2)
    assert numeric.counts == [25, 25, 25, 25] and numeric.range == (0.0, 99.0)
    categorical = profile(pa.array(["a", "a", "b", "c", None]), top_k=2)
    assert categorical is not None and categorical.categories == ["a", "b"] and categorical.counts == [2, 1, 1]
    assert profile(pa.array([[1], [2]])) is None  # lists are not covered
    with pytest.raises(RequestError, match="no column"):
        build_baseline("b", pa.table({"x": [1.0]}), {"y": "v:y"})
    with pytest.raises(RequestError, match="empty"):
        build_baseline("b", pa.table({"x": pa.array([], pa.float64())}), {"x": "v:x"})


def test_unshifted_window_is_quiet(store: FeatureStore) -> None:
    [result] = run_drift(store, "training_march", CALM, CALM + WINDOW)
    assert result.subject == "readings"
    assert result.ok, result.payload["features"]
    for entry in result.payload["features"].values():
        assert entry["judged"] and not entry["breach"] and entry["breaches"] == []
        assert entry["psi"] < 0.1


def test_shifted_window_breaches_every_shifted_feature(store: FeatureStore) -> None:
    [result] = run_drift(store, "training_march", SHIFTED, SHIFTED + WINDOW)
    assert result.status == "breach"
    assert result.breached == ["readings:count", "readings:kind", "readings:level"]
    features = result.payload["features"]
    assert {"psi", "ks"} <= set(features["readings:level"]["breaches"])
    assert features["readings:kind"]["type"] == "categorical"
    assert features["readings:kind"]["chi2_p"] < 1e-6 and "psi" in features["readings:kind"]["breaches"]
    # The report is stored with bins for the UI, and the metrics carry the scores.
    stored = ReportJournal.open(store.config.registry, store.project, store.repo_path)
    try:
        report = stored.reports("drift", "readings", limit=1)[0]
    finally:
        stored.close()
    assert report.status == "breach" and report.window_start == SHIFTED
    level = report.payload["features"]["readings:level"]
    assert len(level["bins"]["baseline"]) == len(level["bins"]["current"]) == len(level["bins"]["edges"]) - 1
    assert sum(level["bins"]["current"]) == pytest.approx(1.0)
    score = monitor_sample(store, "ladle_feature_drift_score", view="readings", feature="level", metric="psi")
    assert score == pytest.approx(level["psi"])
    assert monitor_sample(store, "ladle_feature_drift_breach", view="readings", feature="kind") == 1.0


def test_small_window_is_reported_not_judged(store: FeatureStore) -> None:
    [result] = run_drift(store, "training_march", SHIFTED, SHIFTED + timedelta(minutes=5), record=False)
    assert result.ok and result.report_id is None
    assert not result.payload["features"]["readings:level"]["judged"]


def test_null_rate_change_breaches() -> None:
    base = profile(pa.array(np.random.default_rng(0).normal(size=500)))
    assert base is not None
    with_nulls = pa.array([*np.random.default_rng(1).normal(size=400).tolist(), *([None] * 100)], pa.float64())
    entry = compare_feature(base, with_nulls, Thresholds())
    assert entry["breaches"] == ["null_rate"]
    assert entry["null_rate"] == {"baseline": 0.0, "current": 0.2}
    assert not compare_feature(base, with_nulls, Thresholds(null_rate=None))["breach"]


def test_thresholds_from_view_and_field_tags() -> None:
    view = FeatureView(
        name="v",
        source=FileSource(name="s", path="x.parquet", timestamp_field="ts"),
        schema=[Field(name="a", dtype=Float64, tags={"drift.psi": "0.5"}), Field(name="b", dtype=Float64)],
        tags={"drift.psi": "0.3", "drift.ks": "off", "owner_team": "x"},
    )
    defaults = Thresholds()
    assert thresholds_for(defaults, view, "a").psi == 0.5
    b = thresholds_for(defaults, view, "b")
    assert (b.psi, b.ks, b.null_rate) == (0.3, None, defaults.null_rate)
    with pytest.raises(DefinitionError, match=r"drift\.psy"):
        defaults.with_tags({"drift.psy": "1"}, "feature view 'v'")
    with pytest.raises(DefinitionError, match="not a number"):
        defaults.with_tags({"drift.psi": "high"}, "feature view 'v'")


def test_served_window_reads_the_feature_log_contract(store: FeatureStore, tmp_path: Path) -> None:
    """A log table in mon-log's contract columns, written with the offline store's append."""
    baseline = _baseline(store)
    rng = np.random.default_rng(7)
    n = 300
    log = pa.table(
        {
            "request_id": [f"r{i}" for i in range(n)],
            "log_time": pa.array([SHIFTED + timedelta(seconds=i) for i in range(n)], TS),
            "variant": pa.array([None] * n, pa.string()),
            "sensor_id": pa.array(range(n), pa.int64()),
            "readings__level": pa.array(rng.normal(3.0, 1.0, n)),
            "readings__level__status": ["PRESENT"] * n,
            "readings__level__event_timestamp": pa.array([SHIFTED] * n, TS),
        }
    )
    (store.repo_path / "data" / "log").mkdir()
    source = FileSource(name="readings_model_log", path="data/log", timestamp_field="log_time")
    store.offline_store.append(source, log)
    window = served_window(store.offline_store, source, baseline, SHIFTED, SHIFTED + timedelta(hours=1))
    assert len(window["readings"]["level"]) == n
    assert len(window["readings"]["kind"]) == 0  # not logged: nothing to compare
    entries = compare(baseline, {"readings": {"level": window["readings"]["level"]}}, {}, Thresholds())
    assert entries["readings:level"]["breach"] and entries["readings:level"]["out_of_range"] > 0.05


def test_bad_requests_say_what_is_wrong(store: FeatureStore) -> None:
    with pytest.raises(ObjectNotFoundError, match="training_march"):
        run_drift(store, "nope", CALM, CALM + WINDOW)
    with pytest.raises(RequestError, match="empty"):
        run_drift(store, "training_march", CALM, CALM)
    with pytest.raises(RequestError, match="feature service"):
        run_drift(store, "training_march", CALM, CALM + WINDOW, source="served")


def _baseline(store: FeatureStore):  # type: ignore[no-untyped-def]
    from ladle.monitor.baseline_store import BaselineStore

    baselines = BaselineStore.open(store.config.registry, store.project, store.repo_path)
    try:
        return baselines.load("training_march")
    finally:
        baselines.close()


@pytest.mark.postgres
def test_baselines_and_reports_on_postgresql(postgres_url: str) -> None:
    """The baseline table and the report-derived metrics on a PostgreSQL registry."""
    from ladle.config import RegistryConfig
    from ladle.monitor.baseline_store import BaselineStore
    from ladle.monitor.report_metrics import ReportMetrics

    config = RegistryConfig(path=postgres_url)
    table = reading_rows(T0, 300, seed=4)
    baseline = build_baseline("pg", table, {"level": "readings:level", "kind": "readings:kind"})
    baselines = BaselineStore.open(config, "p1", Path("."))
    try:
        baselines.save(baseline)
        assert baselines.load("pg").features == baseline.features
        assert baselines.names() == ["pg"]
        other = BaselineStore.open(config, "p2", Path("."))
        with pytest.raises(ObjectNotFoundError):
            other.load("pg")  # other projects do not see it
        other.close()
    finally:
        baselines.close()
    entry = compare_feature(baseline.features["readings:level"], table.column("level"), Thresholds())
    journal = ReportJournal.open(config, "p1", Path("."))
    try:
        journal.record("drift", "readings", "ok", {"features": {"readings:level": entry}})
    finally:
        journal.close()
    collector = ReportMetrics(cache_seconds=0)
    collector.watch(config, "p1", Path("."))
    try:
        samples = {(s.name, s.labels.get("metric")): s.value for f in collector.collect() for s in f.samples}
    finally:
        collector.close()
    assert samples[("ladle_feature_drift_score", "psi")] == pytest.approx(0.0)
    assert samples[("ladle_feature_drift_breach", None)] == 0.0


def test_training_columns_map_to_feature_references(store: FeatureStore) -> None:
    from ladle.monitor.baseline_training import baseline_columns

    snapshot = store.snapshot()
    full = pa.table({"sensor_id": [1], "readings__level": [1.0], "readings__kind": ["a"], "other": [2.0]})
    assert baseline_columns(snapshot, full, None) == {
        "readings__level": "readings:level",
        "readings__kind": "readings:kind",
    }
    bare = pa.table({"sensor_id": [1], "level": [1.0], "count": [3]})
    assert baseline_columns(snapshot, bare, ["readings:level", "readings:count"]) == {
        "level": "readings:level",
        "count": "readings:count",
    }
    with pytest.raises(RequestError, match="cannot tell which columns"):
        baseline_columns(snapshot, bare, None)
    with pytest.raises(RequestError, match="no column for 'readings:kind'"):
        baseline_columns(snapshot, bare, "readings_model")


def test_served_drift_end_to_end_through_the_feature_log_seam(
    store: FeatureStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """run_drift(source="served") reads ``ladle.monitor.feature_log.log_source`` (mon-log's module).

    Until that module is merged, a stand-in module returns a real log source in the contract's
    columns, written with the real offline store; everything else (reading, comparing, storing) is real.
    """
    import sys
    import types

    (store.repo_path / "data" / "served_log").mkdir()
    source = FileSource(name="readings_model_log", path="data/served_log", timestamp_field="log_time")
    for arm, rows in (("a", reading_rows(SHIFTED, 300, seed=9)), ("b", reading_rows(SHIFTED, 300, seed=10, mu=0.8))):
        log = pa.table(
            {
                "request_id": [f"{arm}{i}" for i in range(rows.num_rows)],
                "log_time": rows.column("event_timestamp"),
                "variant": pa.array([arm] * rows.num_rows, pa.string()),
                "sensor_id": rows.column("sensor_id"),
                "readings__level": rows.column("level"),
                "readings__count": rows.column("count"),
                "readings__kind": rows.column("kind"),
            }
        )
        store.offline_store.append(source, log)
    stand_in = types.ModuleType("ladle.monitor.feature_log")
    stand_in.log_source = lambda _store, service: source if service == "readings_model" else None  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "ladle.monitor.feature_log", stand_in)
    window = (SHIFTED, SHIFTED + WINDOW)
    [arm_a] = run_drift(
        store, "training_march", *window, source="served", feature_service="readings_model", variant="a"
    )
    [arm_b] = run_drift(
        store, "training_march", *window, source="served", feature_service="readings_model", variant="b"
    )
    assert arm_a.ok and arm_a.payload["features"]["readings:level"]["count"]["current"] == 300
    assert arm_b.subject == "readings_model" and arm_b.payload["source"] == "served"
    assert arm_b.payload["variant"] == "b" and arm_b.breached == ["readings:level"]  # only arm b's level shifted
    assert arm_b.report_id is not None
    with pytest.raises(RequestError, match="source='served'"):
        run_drift(store, "training_march", *window, variant="a")
