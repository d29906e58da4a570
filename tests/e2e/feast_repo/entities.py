"""The commodity platform's entities, written for Feast 0.67 (``from feast import ...``)."""

from feast import Entity, ValueType

commodity = Entity(
    name="commodity",
    join_keys=["commodity_code"],
    value_type=ValueType.STRING,
    description="A traded commodity, e.g. crude_oil_wti, brent, natural_gas, gold.",
    owner="market-data@commodity-analytics",
    tags={"domain": "markets"},
)

country = Entity(
    name="country",
    join_keys=["country_code"],
    description="A country or economic region, ISO 3166 alpha-2 where one exists (e.g. US).",
    owner="macro@commodity-analytics",
    tags={"domain": "macro"},
)

location = Entity(
    name="location",
    join_keys=["location_id"],
    value_type=ValueType.STRING,
    description="A weather station, named by its airport code (e.g. JFK, LGA, EWR, SEA).",
    owner="weather@commodity-analytics",
    tags={"domain": "weather"},
)
