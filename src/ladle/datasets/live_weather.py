"""SIMULATED hourly weather continuing each station's real observations (see docs/live-feed.md).

Per station, fitted on its real hourly observations (values outside ``VALID_RANGES`` ignored):

* temperature: the real mean per (calendar month, UTC hour), which carries the season and the
  diurnal shape, plus an AR(1) anomaly fitted on the real anomalies;
* pressure and sustained wind: AR(1) around the real mean (wind floored at 0);
* precipitation: a two-state (dry/wet hour) Markov chain with the real transition
  frequencies, wet-hour amounts drawn from the real wet-hour amounts;
* gusts: none reported (the storm index then uses the sustained wind, see docs/features.md).

The path starts at ``origin`` from the station's last real reading (anomaly, pressure, wind),
so it continues the real series; one generator per (seed, station) drawn hour by hour makes
the output reproducible and a later ``end`` only appends hours. Every row is simulated.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from ladle.datasets.weather import OBSERVATIONS_SCHEMA
from ladle.transforms.weather import VALID_RANGES

_Floats = npt.NDArray[np.float64]
_HOUR = np.timedelta64(1, "h")


@dataclass(frozen=True)
class _AR1:
    mean: float
    phi: float
    sigma: float
    last: float

    @classmethod
    def fit(cls, values: _Floats, mean: float | None = None) -> _AR1:
        centre = float(np.nanmean(values)) if mean is None else mean
        x = values - centre
        pairs = np.isfinite(x[1:]) & np.isfinite(x[:-1])
        a, b = x[:-1][pairs], x[1:][pairs]
        phi = float(np.clip(np.dot(a, b) / np.dot(a, a), 0.0, 0.999))
        sigma = float(np.std(b - phi * a))
        last = float(x[np.isfinite(x)][-1])
        return cls(centre, phi, sigma, last)


@dataclass(frozen=True)
class StationModel:
    """What the simulation of one station is fitted to (see the module docstring)."""

    location_id: str
    climatology: _Floats  # mean temperature, shape (12 months, 24 hours)
    anomaly: _AR1
    pressure: _AR1
    wind: _AR1
    wet_after_dry: float
    wet_after_wet: float
    wet_amounts: _Floats

    @classmethod
    def fit(cls, obs: pa.Table, location_id: str) -> StationModel:
        """Fit on the real observations of ``location_id`` (``load_nyc_weather`` shape)."""
        rows = obs.filter(pc.equal(obs["location_id"], location_id)).sort_by("event_timestamp")
        if rows.num_rows < 48:
            raise ValueError(f"station {location_id!r} has too few observations to simulate")
        stamps = rows["event_timestamp"].cast(pa.timestamp("us", tz="UTC")).to_numpy().astype("datetime64[h]")
        month = stamps.astype("datetime64[M]").astype(np.int64) % 12
        hour = stamps.astype(np.int64) % 24
        col = {name: _valid(rows, name) for name in VALID_RANGES}
        clim = np.full((12, 24), np.nan)
        temp = col["temperature_c"]
        for m in range(12):
            for h in range(24):
                sel = (month == m) & (hour == h) & np.isfinite(temp)
                clim[m, h] = temp[sel].mean() if sel.any() else np.nanmean(temp)
        rain = np.nan_to_num(col["precipitation_mm"])
        wet = rain > 0
        dry_then = ~wet[:-1]
        return cls(
            location_id=location_id,
            climatology=clim,
            anomaly=_AR1.fit(temp - clim[month, hour], mean=0.0),
            pressure=_AR1.fit(col["pressure_hpa"]),
            wind=_AR1.fit(col["wind_speed_ms"]),
            wet_after_dry=float(wet[1:][dry_then].mean()),
            wet_after_wet=float(wet[1:][~dry_then].mean()) if (~dry_then).any() else 0.0,
            wet_amounts=rain[wet] if wet.any() else np.array([0.0]),
        )


def _valid(rows: pa.Table, name: str) -> _Floats:
    low, high = VALID_RANGES[name]
    values = rows[name].to_numpy(zero_copy_only=False).astype(np.float64)
    return np.where((values >= low) & (values <= high), values, np.nan)


def _step(process: _AR1, state: float, z: float) -> float:
    return process.phi * state + process.sigma * z


def simulate_station(model: StationModel, origin: datetime, end: datetime, seed: int) -> pa.Table:
    """Hourly simulated observations of one station for the whole hours in ``[origin, end]``."""
    first = np.datetime64(_naive_utc(origin), "h")
    if first < np.datetime64(_naive_utc(origin), "us"):
        first += _HOUR
    hours = np.arange(first, np.datetime64(_naive_utc(end), "h") + _HOUR, _HOUR)
    n = len(hours)
    rng = np.random.default_rng([seed, zlib.crc32(f"weather:{model.location_id}".encode())])
    draws = rng.standard_normal((n, 3))
    uniforms = rng.random((n, 2))
    anomaly, pressure, wind = model.anomaly.last, model.pressure.last, model.wind.last
    wet = False
    out = np.empty((n, 4))
    for k in range(n):
        if k:
            anomaly = _step(model.anomaly, anomaly, draws[k, 0])
            pressure = _step(model.pressure, pressure, draws[k, 1])
            wind = _step(model.wind, wind, draws[k, 2])
        wet = bool(uniforms[k, 0] < (model.wet_after_wet if wet else model.wet_after_dry))
        amount = model.wet_amounts[int(uniforms[k, 1] * len(model.wet_amounts))] if wet else 0.0
        out[k] = (anomaly, pressure + model.pressure.mean, max(wind + model.wind.mean, 0.0), amount)
    month = hours.astype("datetime64[M]").astype(np.int64) % 12
    hour = hours.astype(np.int64) % 24
    return pa.table(
        {
            "location_id": pa.array([model.location_id] * n, pa.string()),
            "event_timestamp": pa.array(hours.astype("datetime64[us]")),
            "temperature_c": np.round(model.climatology[month, hour] + out[:, 0], 2),
            "precipitation_mm": np.round(out[:, 3], 2),
            "wind_speed_ms": np.round(out[:, 2], 2),
            "wind_gust_ms": pa.nulls(n, pa.float64()),
            "pressure_hpa": np.round(out[:, 1], 1),
        }
    ).cast(OBSERVATIONS_SCHEMA)


def continue_weather(obs: pa.Table, origin: datetime, end: datetime, seed: int) -> pa.Table:
    """Simulated hourly observations of every station in ``obs`` from ``origin`` to ``end``."""
    stations = sorted(obs["location_id"].unique().to_pylist())
    return (
        pa.concat_tables([simulate_station(StationModel.fit(obs, s), origin, end, seed) for s in stations])
        if stations
        else OBSERVATIONS_SCHEMA.empty_table()
    )


def _naive_utc(moment: datetime) -> datetime:
    utc = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return utc.replace(tzinfo=None)
