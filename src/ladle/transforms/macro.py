"""Economic-indicator features, stamped with their publication time (not the reference period).

Input is a long table of raw observations, one row per ``(country_code, series,
reference_period)``. Each observation becomes public at its *release time*: the end of its
reference period plus the series' publication lag (:data:`PUBLICATION_LAGS`), unless the input
gives an explicit ``release_timestamp``. The output has one row per ``(country_code, release
time)`` carrying, for every feature, the latest value published at or before that time, so a
point-in-time join can never see a figure before it was public.

Values are whatever the input holds (for the bundled data sets: today's revised vintage);
only the timing of the first release is modelled, not revisions.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta

import duckdb
import pyarrow as pa

from ladle.transforms.sql import (
    connection,
    feature_schema,
    finish,
    is_date,
    is_number_or_null,
    is_string,
    is_timestamp,
    micros,
    prepare,
    query,
    registered,
    require_columns,
)

#: Delay from the end of the reference period to the publication, per input series. US
#: statistics are released at 08:30 ET (13:30 UTC in winter, 12:30 UTC in summer); using
#: 13:30 UTC all year keeps the modelled release at or after the real one.
PUBLICATION_LAGS: Mapping[str, timedelta] = {
    # BEA advance GDP estimate: about four weeks after the quarter ends, 08:30 ET.
    "real_gdp": timedelta(days=30, hours=13, minutes=30),
    # BLS CPI: mid-month after the reference month, 08:30 ET.
    "cpi": timedelta(days=15, hours=13, minutes=30),
    # BLS Employment Situation: first Friday after the reference month, 08:30 ET.
    "unemployment_rate": timedelta(days=7, hours=13, minutes=30),
    # Fed H.15 daily rates: posted 16:15 ET the next business day; a period average is final
    # once its last day is posted.
    "interest_rate": timedelta(days=1, hours=21, minutes=15),
    # Fed G.17 industrial production: mid-month after the reference month, 09:15 ET.
    "industrial_production": timedelta(days=16, hours=14, minutes=15),
}

#: Input series -> output feature. ``real_gdp``, ``cpi`` and ``industrial_production`` are
#: levels (or indexes) turned into growth rates.
SERIES_FEATURES: Mapping[str, str] = {
    "real_gdp": "gdp_growth",
    "cpi": "inflation_rate",
    "interest_rate": "interest_rate",
    "unemployment_rate": "unemployment_rate",
    "industrial_production": "industrial_production",
}

ECONOMIC_FEATURES = (
    "gdp_growth",
    "inflation_rate",
    "interest_rate",
    "unemployment_rate",
    "industrial_production",
)

ECONOMIC_FEATURE_SCHEMA = feature_schema("country_code", ECONOMIC_FEATURES)

_INPUT_SPEC = {
    "country_code": is_string,
    "series": is_string,
    "frequency": is_string,
    "reference_period": is_date,
    "value": is_number_or_null,
}
_FREQUENCY_MONTHS = {"M": 1, "Q": 3}


def _is_timestamp_or_null(dtype: pa.DataType) -> bool:
    """A timestamp column, or an all-NULL one."""
    return is_timestamp(dtype) or pa.types.is_null(dtype)


def _check_vocabulary(releases: pa.Table, lags: Mapping[str, timedelta]) -> None:
    series = set(releases.column("series").drop_null().unique().to_pylist())
    unknown = series - set(SERIES_FEATURES)
    if unknown:
        raise ValueError(f"economic_features: unknown series {sorted(unknown)}")
    missing_lag = series - set(lags)
    if missing_lag:
        raise ValueError(f"economic_features: no publication lag for {sorted(missing_lag)}")
    freqs = set(releases.column("frequency").drop_null().unique().to_pylist())
    if freqs - set(_FREQUENCY_MONTHS):
        raise ValueError(
            f"economic_features: frequency must be one of {sorted(_FREQUENCY_MONTHS)}, "
            f"got {sorted(freqs - set(_FREQUENCY_MONTHS))}"
        )


def economic_features_sql(releases: str, lags: str) -> str:
    """The SQL behind :func:`economic_features`.

    ``releases`` is the prepared input (with a ``release_timestamp`` column, possibly all NULL)
    and ``lags`` a ``(series, lag_us)`` table.
    """
    features = ",\n       ".join(f"last_value({f} IGNORE NULLS) OVER w AS {f}" for f in ECONOMIC_FEATURES)
    pivots = ",\n           ".join(
        f"arg_max(value, period) FILTER (WHERE feature = '{f}' AND value IS NOT NULL) AS {f}" for f in ECONOMIC_FEATURES
    )
    mapping = " ".join(f"WHEN '{s}' THEN '{f}'" for s, f in SERIES_FEATURES.items())
    return f"""
WITH src AS (
    SELECT r.country_code, r.series, r.reference_period AS period, r.value,
           CASE r.frequency WHEN 'M' THEN 1 WHEN 'Q' THEN 3 END AS months,
           coalesce(
               r.release_timestamp,
               r.reference_period
                   + to_months(CASE r.frequency WHEN 'M' THEN 1 WHEN 'Q' THEN 3 END)
                   + to_microseconds(l.lag_us)
           ) AS released
    FROM {releases} AS r
    JOIN {lags} AS l ON l.series = r.series
    WHERE r.country_code IS NOT NULL AND r.reference_period IS NOT NULL
      AND isfinite(r.value)
),
derived AS (
    SELECT s.country_code, s.released, s.period,
           CASE s.series {mapping} END AS feature,
           CASE s.series
               -- annualised growth on the previous period: ((x / x_prev)^(periods/yr) - 1)
               WHEN 'real_gdp' THEN 100 * (pow(s.value / prev.value, 12 / s.months) - 1)
               -- change on the same period one year earlier
               WHEN 'cpi' THEN 100 * (s.value / year_ago.value - 1)
               WHEN 'industrial_production' THEN 100 * (s.value / year_ago.value - 1)
               ELSE s.value
           END AS value
    FROM src AS s
    LEFT JOIN src AS prev
        ON prev.country_code = s.country_code AND prev.series = s.series
       AND prev.months = s.months AND prev.period = s.period - to_months(s.months)
    LEFT JOIN src AS year_ago
        ON year_ago.country_code = s.country_code AND year_ago.series = s.series
       AND year_ago.months = s.months AND year_ago.period = s.period - INTERVAL 12 MONTH
),
events AS (
    -- several releases at one instant make one row; per feature the newest period wins
    SELECT country_code, released,
           {pivots}
    FROM derived
    GROUP BY country_code, released
)
SELECT country_code, released AS event_timestamp, released AS created,
       {features}
FROM events
WINDOW w AS (PARTITION BY country_code ORDER BY released
             ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
ORDER BY country_code, event_timestamp
"""


def economic_features(
    releases: pa.Table,
    con: duckdb.DuckDBPyConnection | None = None,
    *,
    lags: Mapping[str, timedelta] | None = None,
) -> pa.Table:
    """Turn raw economic observations into point-in-time feature rows.

    Args:
        releases: columns ``country_code`` (string), ``series`` (one of
            :data:`SERIES_FEATURES`), ``frequency`` (``"M"`` or ``"Q"``), ``reference_period``
            (date, first day of the period) and ``value`` (numeric), plus an optional
            ``release_timestamp`` (timestamp, UTC) that overrides the modelled release time.
            Rows with a NULL or non-finite value are ignored.
        con: optional DuckDB connection to run on.
        lags: publication lag per series, from the end of the reference period; defaults to
            :data:`PUBLICATION_LAGS`.

    Returns:
        One row per ``(country_code, release time)``, sorted, with ``event_timestamp`` = the
        release time, ``created`` equal to it, and the features of
        :data:`ECONOMIC_FEATURES` as last published at or before that time (NULL until a
        first value is out). ``gdp_growth`` is the annualised % change of real GDP on the
        previous period; ``inflation_rate`` and ``industrial_production`` the % change of the
        CPI and of the production index on the same period a year earlier;
        ``interest_rate`` and ``unemployment_rate`` are passed through (%).
    """
    require_columns(releases, _INPUT_SPEC, "economic_features")
    lag_map = dict(PUBLICATION_LAGS if lags is None else lags)
    _check_vocabulary(releases, lag_map)
    if "release_timestamp" in releases.column_names:
        require_columns(releases, {"release_timestamp": _is_timestamp_or_null}, "economic_features")
        releases = releases.drop_columns(["release_timestamp"]).append_column(
            "release_timestamp", releases.column("release_timestamp").cast(pa.timestamp("us", "UTC"))
        )
    else:
        releases = releases.append_column("release_timestamp", pa.nulls(releases.num_rows, pa.timestamp("us", "UTC")))
    columns = [*_INPUT_SPEC, "release_timestamp"]
    timestamps = ["release_timestamp"]
    table = prepare(releases, columns, timestamps=timestamps, floats=["value"])
    lag_table = pa.table(
        {
            "series": pa.array(list(lag_map), pa.string()),
            "lag_us": pa.array([micros(v) for v in lag_map.values()], pa.int64()),
        }
    )
    with (
        connection(con) as db,
        registered(db, table, "releases") as name,
        registered(db, lag_table, "lags") as lag_name,
    ):
        result = query(db, economic_features_sql(name, lag_name))
    return finish(result, ECONOMIC_FEATURE_SCHEMA)
