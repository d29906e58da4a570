"""The feature log's CPU budget: the controller on its own (a fake clock), then a store under it."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ladle.monitor.feature_log_budget import (
    INDIRECT_SECONDS,
    MIN_SCALE,
    PRIOR_WRITER_PRICE,
    VARIABLE_AT_LEAST,
    WINDOW_SECONDS,
    CostBudget,
    fit_price,
)
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
    """Two writer reports: a baseline, then ``per_row`` CPU seconds for each of 10,000 rows (1,000
    requests of 10 rows: the writes cannot tell a request's cost from its rows', so all is per request)."""
    budget.writer_cpu(2.0, 10, 100)
    budget.writer_cpu(2.0 + 10_000 * per_row, 1_010, 10_100)


def test_the_measured_share_counts_the_request_path_the_shipper_and_the_writer_per_row() -> None:
    clock = Clock()
    budget = CostBudget(None, clock, indirect=0.0, prior=None)
    assert not _window(budget, clock, 100, 10, 5_000, 0.0)  # no writer cost known, no prior: nothing measured
    _writer_costs(budget, 20e-6)
    assert _window(budget, clock, 1000, 10, 5_000, 0.002)
    # 1,000 requests x 5 us + 2 ms shipper + 10,000 rows x 20 us = 207 ms in a 1 s window
    assert budget.measured == pytest.approx(0.207)
    assert budget.scale == 1.0  # no budget: measured, never scaled


def test_before_the_writer_is_priced_the_prior_price_holds_the_budget_from_the_first_window() -> None:
    clock = Clock()
    budget = CostBudget(0.02, clock, flush_interval=5.0)
    assert budget.writer_price is None
    # 2,000 one-entity requests in the first second of a process, 5 us each in the request path.
    assert _window(budget, clock, 2000, 1, 5_000, 0.0)
    fixed, per_request, per_row = PRIOR_WRITER_PRICE
    variable = 2000 * (5e-6 + INDIRECT_SECONDS + per_request + per_row)
    assert budget.measured == pytest.approx(fixed / 5.0 + variable)
    allowed = max(0.02 - fixed / 5.0, VARIABLE_AT_LEAST * 0.02)
    assert budget.scale == pytest.approx(max(0.25, allowed / variable))  # at most 4x down per window
    # One priced write (after the baseline report) cannot tell a write's fixed cost from its
    # requests': a small one, 5 requests for 1.53 ms, would price a request at 306 us. The prior holds.
    budget.writer_cpu(1.0, 100, 100)
    budget.writer_cpu(1.00153, 105, 105)
    assert budget.writer_price is not None and budget.writer_price[1] == pytest.approx(306e-6)
    _window(budget, clock, 500, 1, 5_000, 0.0)
    assert budget.measured == pytest.approx(fixed / 5.0 + 500 * (5e-6 + INDIRECT_SECONDS + per_request + per_row))
    # A second write of another size: the fit separates the parts and replaces the prior.
    budget.writer_cpu(1.00153 + 0.0015 + 1000 * 6e-6, 1105, 1105)
    assert budget.writer_price == pytest.approx((0.0015, 6e-6, 0.0))
    _window(budget, clock, 500, 1, 5_000, 0.0)
    assert budget.measured == pytest.approx(0.0015 / 5.0 + 500 * (5e-6 + INDIRECT_SECONDS + 6e-6))


def test_over_budget_the_factor_falls_in_proportion_and_comes_back_when_traffic_drops() -> None:
    clock = Clock()
    budget = CostBudget(0.05, clock, indirect=0.0, prior=None)
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
    budget = CostBudget(0.01, clock, indirect=0.0, prior=None)
    _writer_costs(budget, 50e-6)
    _window(budget, clock, 1000, 10, 0, 0.0)
    low = budget.scale
    assert low < 1.0
    assert not _window(budget, clock, 0, 0, 0, 0.0)  # nothing logged: no measurement
    assert budget.scale == low
    budget.writer_started()  # a replaced writer starts its CPU from zero: its first report is a baseline
    budget.writer_cpu(0.5, 1_020, 10_200)
    budget.writer_cpu(0.5 + 5000 * 50e-6, 1_520, 15_200)
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
        # Reads until the budget has cut the rate (from its first window, at the writer's prior price)
        # and priced the writer from its own writes (every 2 s after it started), then two windows more.
        deadline = time.monotonic() + 60.0
        while (logger.budget.scale == 1.0 or logger.budget.writer_price is None) and time.monotonic() < deadline:
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
        # The writer reports requests as well as rows, so the budget prices it per request and per row.
        assert logger.written == logger.written_requests * len(pairs) > 0
        assert logger.budget.writer_price is not None
    finally:
        store.close()


def test_a_writes_fixed_cost_is_priced_once_per_flush_interval_small_writes_included() -> None:
    # W3a at the bench's old 0.5 s flush: writes of 200-350 one-entity requests, each 2 ms fixed (a
    # file, a footer, the writer waking) plus 4 us a request. Under 500 requests, such writes were
    # not priced at all; now the fixed part is known and charged twice a second.
    clock = Clock()
    budget = CostBudget(0.02, clock, indirect=0.0, flush_interval=0.5)
    cpu, requests = 1.0, 0
    budget.writer_cpu(cpu, requests, requests)
    for size in (350, 200, 300):
        cpu, requests = cpu + 0.002 + size * 4e-6, requests + size
        budget.writer_cpu(cpu, requests, requests)
    assert budget.writer_price == pytest.approx((0.002, 4e-6, 0.0))
    assert _window(budget, clock, 700, 1, 0, 0.0)
    assert budget.measured_fixed == pytest.approx(0.004)
    assert budget.measured == pytest.approx(0.004 + 700 * 4e-6)
    assert budget.scale == 1.0  # 0.0068 of a core: within 0.02


def _serve(
    budget: CostBudget, clock: Clock, traffic: int, fixed: float, per_request: float, windows: int, uneven: int = 0
) -> float:
    """A server logging ``traffic`` requests a second at the budget's factor, its writer costing
    ``fixed`` a write (every flush interval) plus ``per_request``, the first write of a window
    ``uneven`` requests larger than the next; returns the true share of the last window."""
    cpu, written, true = 1.0, 0, 0.0
    budget.writer_cpu(cpu, written, written)
    writes = round(WINDOW_SECONDS / budget.flush_interval)
    for _ in range(windows):
        logged = round(traffic * budget.scale)
        _window(budget, clock, logged, 1, 0, 0.0)
        for write in range(writes):
            size = logged // writes + (uneven if write == 0 else -uneven)
            cpu, written = cpu + fixed + size * per_request, written + size
            budget.writer_cpu(cpu, written, written)
        true = (writes * fixed + logged * per_request) / WINDOW_SECONDS
    return true


def test_a_writes_fixed_cost_cannot_drive_the_rate_down() -> None:
    # Writes all of one size cannot tell their fixed cost from their requests': it all goes per
    # request (exact at that size). When the factor falls, the smaller writes that follow separate
    # the two, and the factor settles where the true cost meets the budget, not at its floor.
    clock = Clock()
    budget = CostBudget(0.02, clock, indirect=0.0, flush_interval=0.5)
    true = _serve(budget, clock, 5000, 0.002, 8e-6, 3)
    assert budget.scale < 1.0 and budget.writer_price == pytest.approx((0.002, 8e-6, 0.0))
    true = _serve(budget, clock, 5000, 0.002, 8e-6, 30)
    assert budget.measured == pytest.approx(true)
    # 0.004 fixed, so the rest may take 0.016: 5,000 x 8 us x factor within [0.8, 1] x 0.016
    assert 0.8 * 0.016 / 0.04 - 0.01 <= budget.scale <= 0.016 / 0.04 + 0.01
    assert true <= 0.02 + 1e-9


def test_a_fixed_part_over_the_budget_leaves_half_of_it_to_the_requests() -> None:
    # A flush interval so short that the writes alone cost more than the budget: the factor cannot
    # reduce that (one write per interval as long as anything is logged), so the requests keep half
    # the budget instead of logging stopping (writes of two sizes: the fit sees the fixed part).
    clock = Clock()
    budget = CostBudget(0.02, clock, indirect=0.0, flush_interval=0.5)
    true = _serve(budget, clock, 1000, 0.015, 8e-6, 10, uneven=50)  # 0.03 fixed, 0.008 the requests
    assert budget.measured_fixed == pytest.approx(0.03)
    assert budget.measured == pytest.approx(true) == pytest.approx(0.038)
    assert budget.scale == 1.0
    true = _serve(budget, clock, 5000, 0.015, 8e-6, 10, uneven=50)  # 0.04 the requests: over half the budget
    assert (VARIABLE_AT_LEAST * 0.02) * 0.8 - 1e-3 <= budget.measured - 0.03 <= VARIABLE_AT_LEAST * 0.02 + 1e-3
    assert budget.scale > 0.2


def test_the_writer_is_priced_per_request_and_per_row_so_one_entity_requests_pay_their_share() -> None:
    # A writer that spends 6 us per request plus 1 us per row, writing one-entity and 100-entity
    # requests in turn (W3b and W3c): priced per row alone, a one-entity request would count 1 us of 7.
    clock = Clock()
    budget = CostBudget(None, clock, indirect=0.0)
    cpu, requests, rows = 1.0, 0, 0
    budget.writer_cpu(cpu, requests, rows)
    for count, per in ((1000, 1), (500, 100), (1000, 1), (500, 100)):
        cpu, requests, rows = cpu + count * (6e-6 + per * 1e-6), requests + count, rows + count * per
        budget.writer_cpu(cpu, requests, rows)
    assert budget.writer_price == pytest.approx((0.0, 6e-6, 1e-6))
    assert _window(budget, clock, 2000, 1, 0, 0.0)
    assert budget.measured == pytest.approx(2000 * 7e-6)
    assert _window(budget, clock, 100, 100, 0, 0.0)
    assert budget.measured == pytest.approx(100 * 106e-6)


def test_one_entity_writes_alone_are_priced() -> None:
    # 800 one-row requests a write (W3b at a 0.5 s flush): under 5,000 rows, still priced by requests.
    clock = Clock()
    budget = CostBudget(0.02, clock, indirect=0.0, prior=None)
    budget.writer_cpu(1.0, 0, 0)
    budget.writer_cpu(1.0 + 800 * 8e-6, 800, 800)
    assert _window(budget, clock, 5000, 1, 0, 0.0)  # 5,000 x 8 us: 0.04 of a core, twice the budget
    assert budget.measured == pytest.approx(0.04)
    assert budget.scale == pytest.approx(0.5)


def test_fit_price_clips_at_zero_and_puts_an_undecidable_cost_on_requests() -> None:
    assert fit_price([(0.01, 1000, 1000), (0.02, 2000, 2000)]) == pytest.approx((0.0, 10e-6, 0.0))
    # One write, or writes of one size: per request (exact for that size), not a fixed cost.
    assert fit_price([(0.003, 350, 350)]) == pytest.approx((0.0, 0.003 / 350, 0.0))
    assert fit_price([(0.003, 350, 350), (0.003, 350, 350)]) == pytest.approx((0.0, 0.003 / 350, 0.0))
    # The rows' cost would come out negative: zero, and all of it per request or per write.
    fixed, per_request, per_row = fit_price([(0.010, 1000, 1000), (0.009, 1000, 100_000)])
    assert per_row == 0.0 and fixed + 1000 * per_request == pytest.approx(0.0095)
    # A fixed part, a request's and a row's, all three seen.
    writes = [(0.002 + 4e-6 * q + 1e-6 * w, q, w) for q, w in ((350, 350), (200, 200), (100, 10_000), (300, 600))]
    assert fit_price(writes) == pytest.approx((0.002, 4e-6, 1e-6))
    assert fit_price([]) == (0.0, 0.0, 0.0)


def test_the_indirect_cost_is_priced_per_logged_request_on_top_of_what_is_measured() -> None:
    clock = Clock()
    budget = CostBudget(0.02, clock, prior=None)
    assert budget.indirect == INDIRECT_SECONDS > 0
    budget.writer_cpu(1.0, 0, 0)
    budget.writer_cpu(1.0 + 1000 * 8e-6, 1000, 1000)
    # 1,000 one-entity requests a second, 4 us each in the request path, 8 us in the writer: 1.2 % of
    # a core measured, within the budget; with the indirect cost priced too it is over.
    assert _window(budget, clock, 1000, 1, 4_000, 0.0)
    assert budget.measured == pytest.approx(1000 * (4e-6 + 8e-6 + INDIRECT_SECONDS))
    assert budget.scale == pytest.approx(0.02 / budget.measured)
