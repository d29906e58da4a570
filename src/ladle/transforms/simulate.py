"""Seeded synthetic price data: intraday ticks bridged between real daily closes.

No offline source has intraday commodity prices or volume, so the intraday features
(``price_change_1h``, ``volume_24h``...) are fed by a *simulated* stream: the live feed's ticks
(docs/live-feed.md). :func:`simulate_ticks` draws, between each pair of consecutive daily
closes, a Brownian bridge in log price on an hourly grid over the 24 h before the later close,
so the stream passes exactly through every close. Output rows carry ``simulated``: True
where the price is synthetic, False on the anchor ticks carrying a real close (unless the
close itself was simulated). Volume is always synthetic.

Randomness is drawn per (seed, commodity, interval end), so a run is reproducible from its
seed, and the ticks of one interval do not depend on ``start``/``end`` or on other
commodities.
"""

from __future__ import annotations

import zlib
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from ladle.transforms.sql import UTC_TIMESTAMP, is_number, is_string, is_timestamp, require_columns

TICK_SCHEMA = pa.schema(
    [
        pa.field("commodity_code", pa.string()),
        pa.field("event_timestamp", UTC_TIMESTAMP),
        pa.field("price", pa.float64()),
        pa.field("volume", pa.float64()),
        pa.field("simulated", pa.bool_()),
    ]
)

_HOUR_US = 3_600_000_000
_DEFAULT_DAILY_VOL = 0.02
_Ints = npt.NDArray[np.int64]
_Floats = npt.NDArray[np.float64]
_Bools = npt.NDArray[np.bool_]


def _as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _epoch_us(value: datetime) -> int:
    delta = _as_utc(value) - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def market_open(us: _Ints) -> _Bools:
    """Mask of instants when the simulated market trades.

    Approximates CME Globex energy hours in winter time, in UTC: open Sunday 23:00 to Friday
    22:00 with a daily pause 22:00-23:00. DST and exchange holidays are ignored.
    """
    hour = (us // _HOUR_US) % 24
    weekday = ((us // (24 * _HOUR_US)) + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
    closed = (hour == 22) | (weekday == 5) | ((weekday == 6) & (hour < 23))
    closed |= (weekday == 4) & (hour > 22)
    result: _Bools = ~closed
    return result


def _interval_ticks(
    rng: np.random.Generator,
    t0: int,
    t1: int,
    p0: float,
    p1: float,
    daily_vol: float,
    base_volume: float,
    trading_hours: bool,
) -> tuple[_Ints, _Floats, _Floats]:
    """Bridge ticks in ``(t0, t1]``: whole hours strictly inside, then the close at ``t1``.

    Only the 24 h before ``t1`` (the daily session that ``t1`` closes) get ticks: a weekend or
    holiday gap between two closes stays empty instead of trading in a session with no close.
    """
    first = max(t0, t1 - 24 * _HOUR_US)
    grid = np.arange((first // _HOUR_US + 1) * _HOUR_US, t1, _HOUR_US, dtype=np.int64)
    if trading_hours:
        grid = grid[market_open(grid)]
    times = np.append(grid, np.int64(t1))
    steps = len(times)
    # The unconditioned walk's variance over an interval is one trading day's.
    sigma = daily_vol / np.sqrt(steps)
    walk = np.cumsum(rng.normal(0.0, sigma, steps))
    frac = np.arange(1, steps + 1) / steps
    log_path = np.log(p0) + frac * (np.log(p1) - np.log(p0)) + walk - frac * walk[-1]
    prices = np.exp(log_path)
    prices[-1] = p1  # exactly the real close, not exp(log(close))
    moves = np.abs(np.diff(log_path, prepend=np.log(p0))) / max(sigma, 1e-12)
    # Volume: lognormal noise with unit mean, higher on bigger moves; whole contracts.
    noise = rng.lognormal(-0.125, 0.5, steps)
    volume = np.round(base_volume * noise * (0.5 + 0.5 * moves))
    return times, prices, volume


def _anchor_volume(rng: np.random.Generator, base_volume: float) -> _Floats:
    return np.round(base_volume * rng.lognormal(-0.125, 0.5, 1))


def _daily_vol(prices: _Floats) -> float:
    if len(prices) < 3:
        return _DEFAULT_DAILY_VOL
    return float(np.std(np.diff(np.log(prices)), ddof=1))


def simulate_ticks(
    daily_closes: pa.Table,
    start: datetime,
    end: datetime,
    seed: int,
    *,
    daily_vol: float | None = None,
    base_volume: float = 1000.0,
    trading_hours: bool = True,
) -> pa.Table:
    """Hourly ticks in ``[start, end]`` bridged between consecutive real daily closes.

    Args:
        daily_closes: ``commodity_code`` (string), ``event_timestamp`` (timestamp of the
            close), ``price`` (positive); an optional boolean ``simulated`` marks closes that
            are themselves synthetic. NULL prices are skipped.
        start, end: inclusive bounds (naive values are UTC).
        seed: random seed; equal inputs and seed give identical output.
        daily_vol: std dev of daily log returns used for the bridge; by default estimated per
            commodity from the closes.
        base_volume: mean volume of a tick (contracts).
        trading_hours: only emit bridge ticks when the market is open (see
            :func:`market_open`); the closes are always emitted.

    Returns:
        ``commodity_code, event_timestamp, price, volume, simulated`` sorted by commodity and
        time. Each close in range appears as a tick with its exact price.
    """
    spec = {"commodity_code": is_string, "event_timestamp": is_timestamp, "price": is_number}
    require_columns(daily_closes, spec, "simulate_ticks")
    lo, hi = _epoch_us(start), _epoch_us(end)
    parts: list[pa.Table] = []
    for code in sorted(daily_closes.column("commodity_code").drop_null().unique().to_pylist()):
        mask = pc.and_(pc.equal(daily_closes["commodity_code"], code), pc.is_valid(daily_closes["price"]))
        rows = daily_closes.filter(mask)
        parts.append(_simulate_one(code, rows, lo, hi, seed, daily_vol, base_volume, trading_hours))
    if not parts:
        return TICK_SCHEMA.empty_table()
    return pa.concat_tables(parts).cast(TICK_SCHEMA)


def _simulate_one(
    code: str,
    rows: pa.Table,
    lo: int,
    hi: int,
    seed: int,
    daily_vol: float | None,
    base_volume: float,
    trading_hours: bool,
) -> pa.Table:
    times = rows["event_timestamp"].cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())
    order = np.argsort(times.to_numpy(), kind="stable")
    t = times.to_numpy()[order]
    p = rows["price"].cast(pa.float64()).to_numpy()[order]
    flags = (
        rows["simulated"].fill_null(False).to_numpy(zero_copy_only=False)[order]
        if "simulated" in rows.column_names
        else np.zeros(len(t), dtype=bool)
    )
    if (p <= 0).any() or not np.isfinite(p).all():
        raise ValueError(f"simulate_ticks: closes of {code!r} must be positive and finite")
    vol = _daily_vol(p) if daily_vol is None else daily_vol
    code_key = zlib.crc32(code.encode())
    out_t: list[_Ints] = []
    out_p: list[_Floats] = []
    out_v: list[_Floats] = []
    out_s: list[_Bools] = []
    if len(t):
        # The first close has no interval before it: emit it alone.
        out_t.append(t[:1])
        out_p.append(p[:1])
        first_rng = np.random.default_rng([seed, code_key, int(t[0]) % 2**63])
        out_v.append(_anchor_volume(first_rng, base_volume))
        out_s.append(flags[:1])
    for k in range(len(t) - 1):
        if t[k + 1] < lo or t[k] > hi or t[k + 1] <= t[k]:
            continue
        rng = np.random.default_rng([seed, code_key, int(t[k + 1]) % 2**63])
        ts, ps, vs = _interval_ticks(rng, int(t[k]), int(t[k + 1]), p[k], p[k + 1], vol, base_volume, trading_hours)
        sim = np.ones(len(ts), dtype=bool)
        sim[-1] = flags[k + 1]
        out_t.append(ts)
        out_p.append(ps)
        out_v.append(vs)
        out_s.append(sim)
    if not out_t:
        return TICK_SCHEMA.empty_table()
    all_t = np.concatenate(out_t)
    keep = (all_t >= lo) & (all_t <= hi)
    return pa.table(
        {
            "commodity_code": pa.array([code] * int(keep.sum()), pa.string()),
            "event_timestamp": pa.array(all_t[keep], pa.int64()).cast(UTC_TIMESTAMP),
            "price": pa.array(np.concatenate(out_p)[keep], pa.float64()),
            "volume": pa.array(np.concatenate(out_v)[keep], pa.float64()),
            "simulated": pa.array(np.concatenate(out_s)[keep], pa.bool_()),
        }
    )
