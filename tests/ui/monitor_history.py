"""Real monitoring history for the UI tests: offline price rows, a drift baseline, and the monitors run on them.

Two weeks of hourly prices for four commodities end an hour before the fixture runs (so ttl and
freshness are judged against now): the first week is the training set the baseline is taken from,
the second has ``current_price`` shifted up by 30 %. The monitors then run exactly as
``ladle monitor`` runs them: drift on the training week (ok), on six hours (too few values to
judge) and on the shifted week (breach),
a skew audit of the view and of a feature service using it after one online value was planted, and a
freshness check of two views.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ladle.monitor.drift_run import run_drift
from ladle.monitor.freshness import check_freshness
from ladle.monitor.skew import audit_skew
from ladle.store import FeatureStore

VIEW = "commodity_price_features"
COMMODITIES = ["brent", "crude_oil_wti", "gold", "natural_gas"]
BASELINE = "price_model_training"
BASELINE_FEATURES = [f"{VIEW}:{f}" for f in ("current_price", "price_change_24h", "volatility_7d", "simulated")]
SERVICE = "price_model_v1"
PLANTED = "gold"  # its online current_price differs from the offline row at the same event time
HOURS = 24 * 7


@dataclass
class MonitorRuns:
    """What the monitors stored (ids in the order they ran)."""

    drift_ids: list[int]
    skew_id: int
    service_skew_id: int
    fresh_views: list[str]
    newest_event: datetime


def price_rows(end: datetime) -> pa.Table:
    """Hourly rows per commodity over the two weeks before ``end``; the second week's prices are 30 % higher."""
    rng = np.random.default_rng(7)
    times = [end - timedelta(hours=h) for h in range(2 * HOURS - 1, -1, -1)]
    cols: dict[str, list[object]] = {k: [] for k in ("commodity_code", "event_timestamp", "current_price")}
    for i, code in enumerate(COMMODITIES):
        level = 50.0 + 20.0 * i
        for j, ts in enumerate(times):
            shift = 1.3 if j >= HOURS else 1.0
            cols["commodity_code"].append(code)
            cols["event_timestamp"].append(ts)
            cols["current_price"].append(round(level * shift * (1 + rng.normal(0, 0.02)), 4))
    n = len(cols["commodity_code"])
    return pa.table({
        "commodity_code": pa.array(cols["commodity_code"], pa.string()),
        "event_timestamp": pa.array(cols["event_timestamp"], pa.timestamp("us", "UTC")),
        "created": pa.array(cols["event_timestamp"], pa.timestamp("us", "UTC")),
        "current_price": pa.array(cols["current_price"], pa.float64()),
        "price_change_1h": pa.array([None] * n, pa.float64()),
        "price_change_24h": pa.array(rng.normal(0, 1.5, n), pa.float64()),
        "volume_24h": pa.array([None] * n, pa.float64()),
        "volatility_7d": pa.array(np.abs(rng.normal(0.3, 0.05, n)), pa.float64()),
        "ma_7d": pa.array(cols["current_price"], pa.float64()),
        "ma_30d": pa.array(cols["current_price"], pa.float64()),
        "rsi_14d": pa.array(rng.uniform(20, 80, n), pa.float64()),
        "simulated": pa.array(rng.random(n) < 0.2, pa.bool_()),
    })  # fmt: skip


def run_monitors(repo: Path) -> MonitorRuns:
    """Write the rows, save the baseline, run drift twice, skew once and freshness for two views."""
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    rows = price_rows(end)
    target = repo / "data" / "offline" / "commodity_prices"
    target.mkdir(parents=True, exist_ok=True)
    pq.write_table(rows, target / "prices.parquet")
    for empty in ("economic", "weather"):  # ingested nothing yet: no events (economic: a freshness breach)
        (repo / "data" / "offline" / empty).mkdir()
    split = end - timedelta(hours=HOURS)
    ts = rows.column("event_timestamp")
    training = rows.filter(pc.less_equal(ts, pa.scalar(split, ts.type)))
    store = FeatureStore(repo_path=repo)
    try:
        store.save_drift_baseline(
            training.rename_columns([f"{VIEW}__{c}" if c in {"current_price", "price_change_24h", "volatility_7d",
                                     "simulated"} else c for c in training.column_names]),
            BASELINE, features=None,
        )  # fmt: skip
        week = timedelta(hours=HOURS - 1)
        drift_ids = [
            run_drift(store, BASELINE, split - week, split)[0].report_id,  # the training week itself: ok
            run_drift(store, BASELINE, end - timedelta(hours=5), end)[0].report_id,  # 24 values < 30: not judged
            run_drift(store, BASELINE, end - week, end)[0].report_id,  # the shifted week: breach
        ]
        latest = rows.filter(pc.equal(ts, pa.scalar(end, ts.type)))
        planted = pc.if_else(
            pc.equal(latest.column("commodity_code"), PLANTED),
            pc.add(latest.column("current_price"), 5.0), latest.column("current_price"),
        )  # fmt: skip
        store.write_to_online_store(VIEW, latest.set_column(3, "current_price", planted))
        skew = audit_skew(store, VIEW, sample=len(COMMODITIES), seed=3)
        by_service = audit_skew(store, SERVICE, sample=len(COMMODITIES), seed=3)  # subject: the service
        fresh = ["commodity_price_features", "economic_features"]
        check_freshness(store, fresh)
    finally:
        store.close()
    assert all(i is not None for i in drift_ids) and skew.report_id is not None and by_service.report_id is not None
    return MonitorRuns([int(i) for i in drift_ids if i is not None], skew.report_id, by_service.report_id, fresh, end)
