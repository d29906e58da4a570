"""The commodity platform's feature views and feature service, written for Feast 0.67."""

from datetime import timedelta

from entities import commodity, country, location
from feast import FeatureService, FeatureView, Field
from feast.types import Bool, Float64, String
from sources import commodity_prices_push, economic_push, weather_push

commodity_price_features = FeatureView(
    name="commodity_price_features",
    entities=[commodity],
    ttl=timedelta(days=3),
    schema=[
        Field(name="commodity_code", dtype=String),
        Field(name="current_price", dtype=Float64, description="last traded price, USD"),
        Field(name="price_change_24h", dtype=Float64, description="% change over 24 hours"),
        Field(name="ma_7d", dtype=Float64, description="7-day moving average of price"),
        Field(name="simulated", dtype=Bool, description="true when the row's price is simulated (live feed)"),
    ],
    source=commodity_prices_push,
    online=True,
    owner="market-data@commodity-analytics",
    description="Price, momentum and volatility features per commodity.",
    tags={"domain": "markets", "live": "simulated"},
)

economic_features = FeatureView(
    name="economic_features",
    entities=[country],
    ttl=timedelta(days=120),
    schema=[
        Field(name="country_code", dtype=String),
        Field(name="gdp_growth", dtype=Float64, description="real GDP growth, %"),
        Field(name="inflation_rate", dtype=Float64, description="CPI inflation, %"),
        Field(name="interest_rate", dtype=Float64, description="3-month T-bill rate, %"),
    ],
    source=economic_push,
    online=True,
    owner="macro@commodity-analytics",
    description="Macro indicators as published (event time = release date).",
    tags={"domain": "macro", "live": "simulated"},
)

weather_features = FeatureView(
    name="weather_features",
    entities=[location],
    ttl=timedelta(hours=6),
    schema=[
        Field(name="temperature_avg", dtype=Float64, description="trailing 24 h mean temperature, °C"),
        Field(name="storm_index", dtype=Float64, description="storm severity index (docs/features.md)"),
    ],
    source=weather_push,
    online=True,
    owner="weather@commodity-analytics",
    description="Weather features per station from hourly observations.",
    tags={"domain": "weather", "live": "simulated"},
)

price_model_v1 = FeatureService(
    name="price_model_v1",
    features=[
        commodity_price_features,
        economic_features[["gdp_growth", "inflation_rate"]],
        weather_features[["temperature_avg", "storm_index"]],
    ],
    owner="quant-research@commodity-analytics",
    description="Inputs of the next-day crude price model.",
    tags={"model": "price_model", "version": "1"},
)
