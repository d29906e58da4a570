"""Templates for ``ladle init``: a runnable feature repo with generated sample data.

>>> init_repo(Path("my_repo"))   # then: ladle -c my_repo apply
"""

from __future__ import annotations

import re
import string
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ladle.errors import RepoError

TEMPLATES = ("local",)
SAMPLE_SEED = 20240101
#: Typical price levels (USD) the sample random walk starts from.
_COMMODITIES = {
    "crude_oil_wti": 75.0,
    "brent_crude": 80.0,
    "natural_gas": 3.0,
    "gold": 2000.0,
    "copper": 4.0,
}
_FILES = {"feature_store.yaml": "feature_store.yaml", "example_repo.py": "example_repo.py", "gitignore": ".gitignore"}


def project_name_for(directory: Path) -> str:
    """A valid project name derived from a directory name (``my-repo`` → ``my_repo``)."""
    name = re.sub(r"[^A-Za-z0-9_]", "_", directory.resolve().name).strip("_")
    if not name or not name[0].isalnum():
        name = f"project_{name}".rstrip("_")
    return name


def init_repo(
    directory: Path, project: str | None = None, template: str = "local", minimal: bool = False
) -> list[Path]:
    """Create a feature repo in ``directory``; returns the files written.

    ``minimal`` writes only ``feature_store.yaml``. Refuses to overwrite an existing repo.
    """
    if template not in TEMPLATES:
        raise RepoError(f"unknown template {template!r}; available: {', '.join(TEMPLATES)}")
    target = Path(directory)
    planned = [target / dst for dst in _FILES.values()] + [target / "data" / "commodity_prices.parquet"]
    existing = [p for p in planned if p.exists()]
    if existing:
        names = ", ".join(str(p) for p in existing)
        raise RepoError(f"already exists: {names}; choose another directory (ladle init never overwrites files)")
    name = project or project_name_for(target)
    if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_]*$", name):
        raise RepoError(
            f"project name {name!r} is invalid: use letters, digits and '_', starting with a letter or digit"
        )
    source = resources.files(__package__ or "ladle.templates").joinpath(template)
    target.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for src_name, dst_name in _FILES.items():
        if minimal and dst_name != "feature_store.yaml":
            continue
        text = source.joinpath(src_name).read_text()
        if dst_name == "feature_store.yaml":
            text = string.Template(text).substitute(project=name)
        path = target / dst_name
        path.write_text(text)
        written.append(path)
    if not minimal:
        written.append(write_sample_prices(target / "data" / "commodity_prices.parquet"))
    return written


def sample_prices(end: datetime | None = None, days: int = 90, seed: int = SAMPLE_SEED) -> pa.Table:
    """Seeded daily prices and volumes for a few commodities, ending on ``end``'s date (UTC).

    Values are a random walk around typical price levels, not market data.
    """
    last = (end or datetime.now(UTC)).astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0, tzinfo=None)
    # Naive UTC here; the Arrow column below carries the UTC zone.
    dates = np.array([last - timedelta(days=days - 1 - i) for i in range(days)], dtype="datetime64[us]")
    rng = np.random.default_rng(seed)
    n = len(_COMMODITIES)
    returns = rng.normal(0.0, 0.015, size=(n, days))
    levels = np.array(list(_COMMODITIES.values()))[:, None] * np.exp(np.cumsum(returns, axis=1))
    change = np.zeros_like(levels)
    change[:, 1:] = levels[:, 1:] / levels[:, :-1] - 1.0
    volume = rng.integers(10_000, 500_000, size=(n, days))
    ts_type = pa.timestamp("us", tz="UTC")
    event_ts = np.tile(dates, n)
    return pa.table(
        {
            "commodity_code": pa.array(np.repeat(list(_COMMODITIES), days), pa.string()),
            "event_timestamp": pa.array(event_ts, ts_type),
            "created": pa.array(event_ts + np.timedelta64(18, "h"), ts_type),
            "close_price": pa.array(np.round(levels, 4).ravel(), pa.float64()),
            "price_change_1d": pa.array(np.round(change, 6).ravel(), pa.float64()),
            "volume": pa.array(volume.ravel(), pa.int64()),
        }
    )


def write_sample_prices(path: Path, end: datetime | None = None) -> Path:
    """Write :func:`sample_prices` to a Parquet file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(sample_prices(end), path)
    return path
