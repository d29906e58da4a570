"""Feature engineering transforms: raw Arrow inputs in, feature rows out, computed in DuckDB.

Every transform takes a ``pyarrow.Table`` (and optionally a DuckDB connection) and returns a
``pyarrow.Table`` with the entity key, ``event_timestamp``, ``created`` and the features; see
``docs/features.md`` for the exact definitions.
"""

from __future__ import annotations

from ladle.transforms.macro import (
    ECONOMIC_FEATURES,
    PUBLICATION_LAGS,
    SERIES_FEATURES,
    economic_features,
)
from ladle.transforms.prices import PRICE_FEATURES, commodity_price_features
from ladle.transforms.simulate import market_open, simulate_ticks
from ladle.transforms.weather import (
    STORM_COMPONENTS,
    VALID_RANGES,
    WEATHER_FEATURES,
    weather_features,
)

__all__ = [
    "ECONOMIC_FEATURES",
    "PRICE_FEATURES",
    "PUBLICATION_LAGS",
    "SERIES_FEATURES",
    "STORM_COMPONENTS",
    "VALID_RANGES",
    "WEATHER_FEATURES",
    "commodity_price_features",
    "economic_features",
    "market_open",
    "simulate_ticks",
    "weather_features",
]
