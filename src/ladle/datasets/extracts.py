"""Small committed extracts of the public-domain / CC0 data sets, as Parquet under ``data/``.

They let the demo and the end-to-end job run without the ``data`` extra. Regenerate them with
``python scripts/make_data_extracts.py`` (which calls :func:`write_extracts`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ladle.datasets.commodities import load_wti_daily
from ladle.datasets.macro import load_us_macro
from ladle.datasets.weather import load_nyc_weather, load_seattle_weather


def _us_macro_public_domain() -> pa.Table:
    # AER's industrial production copy is not committed: see data/README.md.
    return load_us_macro(include_industrial_production=False)


#: Extract name -> (file name, loader producing it).
EXTRACTS: Mapping[str, tuple[str, Callable[[], pa.Table]]] = {
    "wti_daily": ("wti_daily.parquet", load_wti_daily),
    "us_macro": ("us_macro.parquet", _us_macro_public_domain),
    "nyc_weather": ("nyc_weather_2013.parquet", load_nyc_weather),
    "seattle_weather": ("seattle_weather.parquet", load_seattle_weather),
}


def write_extracts(data_dir: str | Path) -> dict[str, Path]:
    """Regenerate every extract from the installed data packages; return the paths written."""
    root = Path(data_dir)
    root.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, (filename, loader) in EXTRACTS.items():
        path = root / filename
        pq.write_table(loader(), path, compression="zstd", compression_level=9)
        written[name] = path
    return written


def load_committed_extracts(data_dir: str | Path) -> dict[str, pa.Table]:
    """Read the committed extracts; keys are those of :data:`EXTRACTS`.

    Each table has the same schema as its loader's output (``load_wti_daily``,
    ``load_us_macro`` without industrial production, ``load_nyc_weather``,
    ``load_seattle_weather``).
    """
    root = Path(data_dir)
    missing = [f for f, _ in EXTRACTS.values() if not (root / f).is_file()]
    if missing:
        from ladle.errors import DataSourceError

        raise DataSourceError(
            f"missing data extracts in {root}: {missing}; point data_dir (feature_store.yaml) or LADLE_DATA_DIR "
            "at a checkout's data/, or run `python scripts/make_data_extracts.py` with ladle[data] installed"
        )
    return {name: pq.read_table(root / filename) for name, (filename, _) in EXTRACTS.items()}
