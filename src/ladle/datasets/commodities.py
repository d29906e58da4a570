"""Commodity price loaders: real WTI daily closes (natural gas exists only in the simulated live feed)."""

from __future__ import annotations

from datetime import date, time

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from ladle.datasets._require import require
from ladle.transforms.sql import UTC_TIMESTAMP

WTI_CODE = "crude_oil_wti"
NATURAL_GAS_CODE = "natural_gas"

#: Daily closes are stamped at the NYMEX settlement, 14:30 New York winter time (19:30 UTC);
#: in summer the settlement is an hour earlier, so the stamp is never before the price existed.
#: Pass it as ``session_close`` to ``commodity_price_features``.
CLOSE_TIME_UTC = time(19, 30)

DAILY_SCHEMA = pa.schema(
    [
        pa.field("commodity_code", pa.string()),
        pa.field("event_timestamp", UTC_TIMESTAMP),
        pa.field("price", pa.float64()),
        pa.field("volume", pa.float64()),
        pa.field("simulated", pa.bool_()),
    ]
)


def _close_stamps(days: npt.NDArray[np.datetime64]) -> pa.Array:
    offset = np.timedelta64(CLOSE_TIME_UTC.hour * 60 + CLOSE_TIME_UTC.minute, "m")
    stamps = days.astype("datetime64[D]").astype("datetime64[us]") + offset
    return pa.array(stamps).cast(UTC_TIMESTAMP)


def load_wti_daily(start: date | None = None, end: date | None = None) -> pa.Table:
    """WTI crude spot, daily, 1986-01-02 to 2019-01-03 (FRED DCOILWTICO, public domain).

    Read from the copy shipped in the ``arch`` package. Holidays (no price) are dropped.
    Returns the raw tick shape ``commodity_code`` (``"crude_oil_wti"``), ``event_timestamp``
    (the date at :data:`CLOSE_TIME_UTC`), ``price`` (USD/bbl), ``volume`` (NULL: no public
    volume) and ``simulated`` (False), optionally restricted to ``start <= date <= end``.
    """
    wti = require("arch.data.wti", "arch")
    frame = wti.load()
    frame = frame[frame["DCOILWTICO"].notna()]
    days = frame.index.to_numpy().astype("datetime64[D]")
    keep = np.ones(len(days), dtype=bool)
    if start is not None:
        keep &= days >= np.datetime64(start, "D")
    if end is not None:
        keep &= days <= np.datetime64(end, "D")
    n = int(keep.sum())
    return pa.table(
        {
            "commodity_code": pa.array([WTI_CODE] * n, pa.string()),
            "event_timestamp": _close_stamps(days[keep]),
            "price": pa.array(frame["DCOILWTICO"].to_numpy()[keep], pa.float64()),
            "volume": pa.nulls(n, pa.float64()),
            "simulated": pa.array(np.zeros(n, dtype=bool)),
        },
        schema=DAILY_SCHEMA,
    )
