"""The platform's feature views and the feature service of its price model.

Every feature is defined exactly in docs/features.md. The offline history is real, at its real
dates (``ladle ingest``); fresh rows come from the live feed (``ladle feed``), which is simulated
and says so in each view's ``simulated`` feature (docs/live-feed.md). The ttl of each view is how
long a value stays fit to serve:

* prices, 3 days: live features are hourly, the history daily, and markets close for weekends
  and holidays; a price older than a long weekend is stale for a price model and is served as
  OUTSIDE_MAX_AGE (so is Friday's close on a Monday holiday evening).
* economic, 120 days: the slowest series (GDP) is quarterly and published about a month after
  the quarter; 120 days covers one release cycle plus the publication lag.
* weather, 6 hours: observations are hourly; six hours tolerates a few missed feed or
  materialization runs before a station's values are flagged as stale.
"""

from datetime import timedelta

from entities import commodity, country, location
from sources import commodity_prices_push, economic_push, weather_push

from ladle import Bool, FeatureService, FeatureView, Field, Float64

commodity_price_features = FeatureView(
    name="commodity_price_features",
    entities=[commodity],
    ttl=timedelta(days=3),
    schema=[
        Field(name="current_price", dtype=Float64, description="last traded price, USD"),
        Field(name="price_change_1h", dtype=Float64, description="% change over 1 hour (NULL in the daily history)"),
        Field(name="price_change_24h", dtype=Float64, description="% change over 24 hours"),
        Field(name="volume_24h", dtype=Float64, description="volume over 24 hours (simulated; NULL in daily history)"),
        Field(name="volatility_7d", dtype=Float64, description="annualised volatility of daily log returns, 7 days"),
        Field(name="ma_7d", dtype=Float64, description="7-day moving average of price"),
        Field(name="ma_30d", dtype=Float64, description="30-day moving average of price"),
        Field(name="rsi_14d", dtype=Float64, description="Wilder's 14-day RSI, 0-100"),
        Field(name="simulated", dtype=Bool, description="true when the row's price is simulated (live feed)"),
    ],
    source=commodity_prices_push,
    online=True,
    owner="market-data@commodity-analytics",
    description="Price, momentum and volatility features per commodity.",
    tags={"domain": "markets", "live": "simulated", "ladle.freshness_slo": "3h"},
)

economic_features = FeatureView(
    name="economic_features",
    entities=[country],
    ttl=timedelta(days=120),
    schema=[
        Field(name="gdp_growth", dtype=Float64, description="real GDP growth, %"),
        Field(name="inflation_rate", dtype=Float64, description="CPI inflation, %"),
        Field(name="interest_rate", dtype=Float64, description="3-month T-bill rate, %"),
        Field(name="unemployment_rate", dtype=Float64, description="unemployment rate, %"),
        Field(name="industrial_production", dtype=Float64, description="industrial production growth, %"),
        Field(name="simulated", dtype=Bool, description="true for simulated releases (live feed)"),
    ],
    source=economic_push,
    online=True,
    owner="macro@commodity-analytics",
    description="Macro indicators as published (event time = release date).",
    tags={"domain": "macro", "live": "simulated", "ladle.freshness_slo": "40d"},
)

weather_features = FeatureView(
    name="weather_features",
    entities=[location],
    ttl=timedelta(hours=6),
    schema=[
        Field(name="temperature_avg", dtype=Float64, description="trailing 24 h mean temperature, °C"),
        Field(name="precipitation", dtype=Float64, description="trailing 24 h precipitation, mm"),
        Field(name="wind_speed", dtype=Float64, description="wind speed, m/s"),
        Field(name="storm_index", dtype=Float64, description="storm severity index (docs/features.md)"),
        Field(name="simulated", dtype=Bool, description="true for simulated observations (live feed)"),
    ],
    source=weather_push,
    online=True,
    owner="weather@commodity-analytics",
    description="Weather features per station from hourly observations.",
    tags={"domain": "weather", "live": "simulated", "ladle.freshness_slo": "3h"},
)

price_model_v1 = FeatureService(
    name="price_model_v1",
    features=[
        commodity_price_features,
        economic_features[["gdp_growth", "inflation_rate", "interest_rate"]],
        weather_features[["temperature_avg", "storm_index"]],
    ],
    owner="quant-research@commodity-analytics",
    description="Inputs of the next-day crude price model.",
    tags={"model": "price_model", "version": "1"},
)
