"""The live feed: SIMULATED fresh rows continuing each real series up to now (docs/live-feed.md).

``ladle feed`` runs these and pushes their rows through the views' push sources, the path
production data take; every row has ``simulated`` true. Each feed computes the same features as
the batch path (the same ``ladle.transforms``) over a path that starts at the series' last real
observation, ``warmup`` before the first pushed row:

* prices: daily closes continue the real WTI closes (geometric random walk with the drift and
  volatility of the last 250 real daily log returns); ``natural_gas`` has no public offline
  source and starts at a made-up 3.0 USD/MMBtu with 2.5 % daily volatility. Hourly ticks and
  volumes between the closes come from ``simulate_ticks``; the warm-up covers ``ma_30d`` and
  the 15 closes of ``rsi_14d``;
* macro: the US quarterly series continue from 2009Q3, released on the modelled dates;
* weather: hourly observations of JFK, LGA and EWR continue from their last real hour (2013-12-30 23:00 UTC).
"""

from datetime import timedelta

import pyarrow as pa
from ingestion import DATA_DIR, macro_releases, mark

from ladle.datasets import CLOSE_TIME_UTC, NATURAL_GAS_CODE, WTI_CODE, load_committed_extracts
from ladle.datasets.live import NATURAL_GAS_MODEL, WalkModel, continue_closes, continue_macro
from ladle.datasets.live_weather import continue_weather
from ladle.ingest.feed import FeedRequest, LiveFeed
from ladle.transforms import commodity_price_features, economic_features, simulate_ticks, weather_features


def live_prices(request: FeedRequest) -> pa.Table:
    """Price features of simulated hourly ticks from ``request.origin`` to ``request.now``."""
    wti = load_committed_extracts(DATA_DIR)["wti_daily"]
    models = {WTI_CODE: WalkModel.from_closes(wti["price"].to_numpy()), NATURAL_GAS_CODE: NATURAL_GAS_MODEL}
    closes = pa.concat_tables(
        [continue_closes(code, model, request.origin, request.now, request.seed) for code, model in models.items()]
    )
    ticks = simulate_ticks(closes, request.origin, request.now, seed=request.seed)
    return mark(commodity_price_features(ticks, session_close=CLOSE_TIME_UTC), simulated=True)


def live_economic(request: FeedRequest) -> pa.Table:
    """Macro features of simulated releases up to ``request.now``."""
    raw = continue_macro(macro_releases(), request.origin, request.now, request.seed)
    return mark(economic_features(raw), simulated=True)


def live_weather(request: FeedRequest) -> pa.Table:
    """Weather features of simulated hourly observations up to ``request.now``."""
    obs = continue_weather(load_committed_extracts(DATA_DIR)["nyc_weather"], request.origin, request.now, request.seed)
    return mark(weather_features(obs), simulated=True)


prices_feed = LiveFeed(
    name="commodity_prices_live",
    push_source="commodity_prices_push",
    compute=live_prices,
    warmup=timedelta(days=45),
    # the market is shut from Friday 22:00 to Sunday 23:00 UTC: three days always hold ticks
    catch_up=timedelta(days=3),
    description="SIMULATED hourly ticks continuing WTI (and a made-up natural gas) up to now",
    tags={"simulated": "all"},
)

economic_feed = LiveFeed(
    name="economic_live",
    push_source="economic_push",
    compute=live_economic,
    warmup=timedelta(days=400),
    catch_up=timedelta(days=200),
    description="SIMULATED US macro releases continuing 2009Q3 up to now",
    tags={"simulated": "all"},
)

weather_feed = LiveFeed(
    name="weather_live",
    push_source="weather_push",
    compute=live_weather,
    warmup=timedelta(days=1),
    catch_up=timedelta(days=1),
    description="SIMULATED hourly JFK/LGA/EWR observations continuing 2013 up to now",
    tags={"simulated": "all"},
)
