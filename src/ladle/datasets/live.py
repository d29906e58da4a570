"""SIMULATED continuations of the real series, for the live feed (see docs/live-feed.md).

The real data sets end years ago (WTI 2019-01-03, US macro 2009Q3, New York weather 2013-12-30).
What is live is new data: each function here continues a series from its **last real
observation** over a simulated path that starts at ``origin`` (not at the real end date: the
years in between are not simulated) and is statistically like the real series:

* daily closes: a geometric random walk on business days whose daily log-return drift and
  volatility are those of the last :data:`RETURN_WINDOW` real closes;
* macro: each quarterly (or monthly) series a random walk per period, in log for levels
  (GDP, CPI, production index: drift and volatility of the last :data:`PERIOD_WINDOW`
  log changes) and in level for rates (no drift, volatility of the changes, floored at 0).

Randomness comes from one generator per (seed, series) drawn in time order, so equal inputs,
seed, ``origin`` and end give equal output, and a longer end only appends (a follow-up run
with the same origin continues the same path). Every row is marked ``simulated``.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from datetime import UTC, date, datetime

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from ladle.datasets.commodities import CLOSE_TIME_UTC, DAILY_SCHEMA
from ladle.datasets.macro import RELEASES_SCHEMA

#: How many real daily log returns (about one trading year) set a continuation's drift and vol.
RETURN_WINDOW = 250
#: How many real periods (ten years of quarters) set a macro continuation's drift and vol.
PERIOD_WINDOW = 40
#: Macro series continued in log (levels and indexes); the others are rates, continued in level.
LOG_SERIES = frozenset({"real_gdp", "cpi", "industrial_production"})


@dataclass(frozen=True)
class WalkModel:
    """A geometric random walk: start level, daily drift and volatility of the log returns."""

    level: float
    drift: float
    vol: float

    @classmethod
    def from_closes(cls, prices: npt.ArrayLike, window: int = RETURN_WINDOW) -> WalkModel:
        """Fit on the last ``window`` log returns of ``prices``; start at the last price."""
        p = np.asarray(prices, dtype=np.float64)
        p = p[np.isfinite(p) & (p > 0)]
        if len(p) < 3:
            raise ValueError("a walk needs at least 3 positive prices to estimate its volatility")
        returns = np.diff(np.log(p[-(window + 1) :]))
        return cls(level=float(p[-1]), drift=float(returns.mean()), vol=float(returns.std(ddof=1)))


#: natural_gas has no public offline series to continue: a documented, made-up starting point
#: (3.0 USD/MMBtu, no drift, 2.5 % daily volatility; docs/live-feed.md). The live feed and
#: ``ladle publish`` both walk from it.
NATURAL_GAS_MODEL = WalkModel(level=3.0, drift=0.0, vol=0.025)


def _rng(seed: int, series: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(series.encode())])


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def continue_closes(commodity_code: str, model: WalkModel, origin: datetime, end: datetime, seed: int) -> pa.Table:
    """Simulated daily closes of ``commodity_code`` on business days from ``origin`` to ``end``.

    The first close (the first business day at or after ``origin``'s date) is the model's start
    level, the last real close, so the path continues the real series; each later close is the
    previous one times ``exp(drift + vol * z)``. Closes are stamped at
    :data:`~ladle.datasets.CLOSE_TIME_UTC`; the last one is the first close at or after ``end``
    (a live tick stream bridges towards the next close). Shape: :data:`DAILY_SCHEMA`, every row
    ``simulated``, ``volume`` NULL like the real loaders.
    """
    first = np.datetime64(_utc(origin).date(), "D")
    last = np.datetime64(_utc(end).date(), "D") + 7
    days = np.arange(first, last + 1)
    days = days[np.is_busday(days)]
    offset = np.timedelta64(CLOSE_TIME_UTC.hour * 60 + CLOSE_TIME_UTC.minute, "m")
    stamps = days.astype("datetime64[us]") + offset
    end_us = np.datetime64(_utc(end).replace(tzinfo=None), "us")
    keep = int(np.searchsorted(stamps, end_us, side="left")) + 1
    days, stamps = days[:keep], stamps[:keep]
    steps = model.drift + model.vol * _rng(seed, commodity_code).standard_normal(len(days))
    steps[0] = 0.0
    prices = model.level * np.exp(np.cumsum(steps))
    n = len(days)
    return pa.table(
        {
            "commodity_code": pa.array([commodity_code] * n, pa.string()),
            "event_timestamp": pa.array(stamps).cast(DAILY_SCHEMA.field("event_timestamp").type),
            "price": pa.array(np.round(prices, 4), pa.float64()),
            "volume": pa.nulls(n, pa.float64()),
            "simulated": pa.array(np.ones(n, dtype=bool)),
        },
        schema=DAILY_SCHEMA,
    )


def _add_months(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def _period_start(day: date, months: int) -> date:
    return date(day.year, (day.month - 1) // months * months + 1, 1)


def _continue_series(history: pa.Table, series: str, origin: date, end: date, seed: int) -> pa.Table:
    rows = history.filter(pc.equal(history["series"], series)).sort_by("reference_period")
    values = rows["value"].to_numpy(zero_copy_only=False).astype(np.float64)
    finite = np.isfinite(values)
    frequency = rows["frequency"][0].as_py()
    months = 1 if frequency == "M" else 3
    periods = []
    period = _period_start(origin, months)
    while period <= end:
        periods.append(period)
        period = _add_months(period, months)
    if series in LOG_SERIES:
        changes = np.diff(np.log(values[finite][-(PERIOD_WINDOW + 1) :]))
        drift, vol = float(changes.mean()), float(changes.std(ddof=1))
    else:
        changes = np.diff(values[finite][-(PERIOD_WINDOW + 1) :])
        drift, vol = 0.0, float(changes.std(ddof=1))
    steps = drift + vol * _rng(seed, f"macro:{series}").standard_normal(len(periods))
    steps[:1] = 0.0
    last = float(values[finite][-1])
    path = last * np.exp(np.cumsum(steps)) if series in LOG_SERIES else np.maximum(last + np.cumsum(steps), 0.0)
    n = len(periods)
    country = rows["country_code"][0].as_py()
    return pa.table(
        {
            "country_code": [country] * n,
            "series": [series] * n,
            "frequency": [frequency] * n,
            "reference_period": pa.array(periods, pa.date32()),
            "value": pa.array(np.round(path, 4), pa.float64()),
        },
        schema=RELEASES_SCHEMA,
    )


def continue_macro(history: pa.Table, origin: datetime, end: datetime, seed: int) -> pa.Table:
    """Simulated raw macro observations continuing every series of ``history``.

    ``history`` is the long shape of :func:`~ladle.datasets.load_us_macro` (one country). Each
    series gets one observation per period from the period containing ``origin`` to the one
    containing ``end``; the first equals the last real value. Pass the result to
    ``economic_features``, which stamps each with its modelled release time (so rows whose
    release is after ``end`` must be dropped by the caller).
    """
    series = sorted(history["series"].unique().to_pylist())
    parts = [_continue_series(history, s, _utc(origin).date(), _utc(end).date(), seed) for s in series]
    return pa.concat_tables(parts) if parts else RELEASES_SCHEMA.empty_table()
