"""The feature log's CPU budget: the controller on its own (a fake clock), then a store under it."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ladle.monitor.feature_log_budget import MIN_SCALE, WINDOW_SECONDS, CostBudget
from unit.feature_log_repo import build, entity_rows


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _window(budget: CostBudget, clock: Clock, requests: int, rows: int, timed_ns: int, shipper: float) -> bool:
    """One window: ``requests`` logged requests of ``rows`` rows each, every one timed at ``timed_ns``."""
    for _ in range(requests):
        if budget.logged(rows):
            budget.timed(timed_ns)
    clock.now += WINDOW_SECONDS
    return budget.tick(shipper)


def _writer_costs(budget: CostBudget, per_row: float) -> None:
    """Two writer reports: a baseline, then ``per_row`` CPU seconds for each of 10,000 rows."""
    budget.writer_cpu(2.0, 100)
    budget.writer_cpu(2.0 + 10_000 * per_row, 10_100)


def test_the_measured_share_counts_the_request_path_the_shipper_and_the_writer_per_row() -> None:
    clock = Clock()
    budget = CostBudget(None, clock)
    assert not _window(budget, clock, 100, 10, 5_000, 0.0)  # no writer cost known yet: nothing measured
    _writer_costs(budget, 20e-6)
    assert _window(budget, clock, 1000, 10, 5_000, 0.002)
    # 1,000 requests x 5 us + 2 ms shipper + 10,000 rows x 20 us = 207 ms in a 1 s window
    assert budget.measured == pytest.approx(0.207)
    assert budget.scale == 1.0  # no budget: measured, never scaled


def test_over_budget_the_factor_falls_in_proportion_and_comes_back_when_traffic_drops() -> None:
    clock = Clock()
    budget = CostBudget(0.05, clock)
    _writer_costs(budget, 20e-6)
    _window(budget, clock, 1000, 10, 0, 0.0)  # 0.2 of a core: four times the budget
    assert budget.scale == pytest.approx(0.25)
    # Logging follows the factor: a quarter of the requests now, within budget; the factor holds.
    _window(budget, clock, 250, 10, 0, 0.0)
    assert budget.scale == pytest.approx(0.25)
    # A burst ten times larger: the factor falls at most 4x per window, then settles.
    _window(budget, clock, 2500, 10, 0, 0.0)
    assert budget.scale == pytest.approx(0.25 / 4)
    # Traffic drops: the factor doubles at most per window, up to 1 and never above.
    for expected in (0.125, 0.25, 0.5, 1.0, 1.0):
        _window(budget, clock, 10, 10, 0, 0.0)
        assert budget.scale == pytest.approx(expected)


def test_idle_windows_and_a_new_writer_leave_the_factor_alone() -> None:
    clock = Clock()
    budget = CostBudget(0.01, clock)
    _writer_costs(budget, 50e-6)
    _window(budget, clock, 1000, 10, 0, 0.0)
    low = budget.scale
    assert low < 1.0
    assert not _window(budget, clock, 0, 0, 0, 0.0)  # nothing logged: no measurement
    assert budget.scale == low
    budget.writer_started()  # a replaced writer starts its CPU from zero: its first report is a baseline
    budget.writer_cpu(0.5, 10_200)
    budget.writer_cpu(0.5 + 5000 * 50e-6, 15_200)
    _window(budget, clock, 20, 10, 0, 0.0)  # 10 ms of 1 s against a 10 ms budget: holds
    assert budget.scale == low
    for _ in range(40):  # a flood cannot push the factor below its floor
        _window(budget, clock, 100_000, 100, 0, 1.0)
    assert budget.scale == MIN_SCALE


def test_a_store_under_a_small_budget_logs_a_sample_and_says_at_which_rate(tmp_path: Path) -> None:
    store = build(tmp_path, {"type": "sqlite", "path": "data/online.db"}, tag="budget")
    try:
        settings = store.config.feature_server.feature_logging.model_copy(
            update={"cpu_budget": 0.001, "flush_interval_secs": 2.0}
        )
        server = store.config.feature_server.model_copy(update={"feature_logging": settings})
        store.config = store.config.model_copy(update={"feature_server": server})
        service = store.snapshot().feature_service("price_model")
        pairs = [(c, v) for c in ("crude_oil_wti", "brent", "nickel", "gold") for v in ("ICE", "NYMEX", "LME")]
        rows = entity_rows(pairs)
        before = datetime.now(UTC) - timedelta(seconds=1)
        served = 0
        logger = store.feature_logger
        # Reads until the budget has priced the writer's rows (its first large writes, every 2 s, after it
        # started: seconds on a busy machine) and cut the rate, then two windows more.
        deadline = time.monotonic() + 60.0
        while logger.budget.scale == 1.0 and time.monotonic() < deadline:
            store.get_online_features(service, rows)
            served += 1
        assert logger.budget.measured is not None and logger.budget.scale < 1.0
        more = time.monotonic() + 2.0
        while time.monotonic() < more:
            store.get_online_features(service, rows)
            served += 1
        logger.flush()
        log = store.get_feature_log("price_model", start=before)
        requests = log.column("request_id").unique()
        assert 0 < len(requests) < served  # a sample, not every request
        rates = log.column("sample_rate").to_pylist()
        assert max(rates) == 1.0  # before the first window closed, every request was logged
        assert min(rates) < 1.0 and all(0 < r <= 1.0 for r in rates)
        assert log.num_rows == len(requests) * len(pairs)  # a logged request is logged whole
    finally:
        store.close()


def test_small_writes_do_not_price_a_row_so_a_writes_fixed_cost_cannot_drive_the_rate_down() -> None:
    clock = Clock()
    budget = CostBudget(0.02, clock)
    _writer_costs(budget, 10e-6)
    # Writes of 500 rows that cost 20 ms fixed plus 10 us a row: priced per row (50 us), each window
    # of 500 rows would look like 25 ms, over the 20 ms budget, and the factor would keep falling.
    cpu, rows = 2.0 + 10_000 * 10e-6, 10_100
    for _ in range(5):
        cpu, rows = cpu + 0.020 + 500 * 10e-6, rows + 500
        budget.writer_cpu(cpu, rows)
        _window(budget, clock, 50, 10, 0, 0.0)
    assert budget.measured == pytest.approx(0.005)  # 500 rows at the 10 us priced on a large write
    assert budget.scale == 1.0
