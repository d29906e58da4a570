"""Synthetic commodity ticks and entity frames for the benchmarks, with a fixed seed.

Files (WORKLOADS.md, "The data set"):

* ``commodity_ticks.parquet``: ``commodity_code`` (``CMD00000`` …), ``event_timestamp`` (UTC, one
  tick per entity per hour at a random second of the hour, from 2024-01-01T00:00:00Z), ``created``
  (event time + 0-59 s) and eight float64 features; sorted by ``event_timestamp``.
* ``entity_df.parquet``: ``req_id`` (int64), ``commodity_code`` (random entity),
  ``event_timestamp`` (random second in the span); 100,000 rows by default.
* W1b variant, ``commodity_ticks_distinct.parquet``: the same schema with 1,000,000 distinct
  entities x 1 row each.

Generate::

    .venv/bin/python -m bench.data --out bench/data                    # defaults (W1a, W4)
    .venv/bin/python -m bench.data --out bench/data --variant w1b      # W1b file
    .venv/bin/python -m bench.data --out bench/data --entities 100000  # W6 scale (10x)

Benchmarks call :func:`ensure_ticks` / :func:`ensure_entity_df`: existing files of the right size
are reused (so Ladle and Feast read the very same bytes), missing ones are generated.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

START = np.datetime64("2024-01-01T00:00:00", "us")
HOUR_US = 3_600_000_000
FEATURES = (
    "current_price",
    "price_change_1h",
    "price_change_24h",
    "volume_24h",
    "volatility_7d",
    "ma_7d",
    "ma_30d",
    "rsi_14d",
)
DEFAULT_DIR = Path(__file__).resolve().parent / "data"
# Several row groups let DuckDB (and pyarrow) scan the file on every core.
ROW_GROUP_ROWS = 100_000


@dataclass(frozen=True)
class TickSpec:
    """Size and seed of a ticks file."""

    entities: int = 10_000
    hours: int = 100
    seed: int = 42

    @property
    def rows(self) -> int:
        """Number of rows in the file."""
        return self.entities * self.hours


def entity_codes(n: int) -> pa.Array:
    """``CMD00000`` … for ``n`` entities (wider codes once ``n`` exceeds 100,000)."""
    width = max(5, len(str(n - 1)))
    numbers = np.char.zfill(np.arange(n).astype(str), width)
    return pa.array(np.char.add("CMD", numbers))


def _features(rng: np.random.Generator, entities: int, hours: int) -> dict[str, np.ndarray]:
    """Plausible price features as (hours, entities) arrays, vectorized."""
    base = rng.uniform(1.0, 2_000.0, size=entities)
    returns = rng.normal(0.0, 0.004, size=(hours, entities))
    price = base * np.exp(np.cumsum(returns, axis=0))
    prev_1h = np.vstack([price[:1] / np.exp(returns[:1]), price[:-1]])
    lag = min(24, hours - 1) if hours > 1 else 0
    prev_24h = np.vstack([np.repeat(price[:1], lag, axis=0), price[: hours - lag]]) if lag else prev_1h
    return {
        "current_price": price,
        "price_change_1h": (price / prev_1h - 1.0) * 100.0,
        "price_change_24h": (price / prev_24h - 1.0) * 100.0,
        "volume_24h": rng.lognormal(12.0, 1.0, size=(hours, entities)),
        "volatility_7d": np.abs(rng.normal(0.3, 0.1, size=(hours, entities))),
        "ma_7d": price * (1.0 + rng.normal(0.0, 0.01, size=(hours, entities))),
        "ma_30d": price * (1.0 + rng.normal(0.0, 0.03, size=(hours, entities))),
        "rsi_14d": rng.uniform(0.0, 100.0, size=(hours, entities)),
    }


def make_ticks(spec: TickSpec) -> pa.Table:
    """The ticks table: ``spec.entities`` x ``spec.hours`` rows, sorted by event time."""
    rng = np.random.default_rng(spec.seed)
    hours, entities = spec.hours, spec.entities
    hour_start = np.arange(hours, dtype=np.int64)[:, None] * HOUR_US
    offset_us = rng.integers(0, 3_600, size=(hours, entities), dtype=np.int64) * 1_000_000
    event_us = (hour_start + offset_us).ravel()
    created_us = event_us + rng.integers(0, 60, size=event_us.size, dtype=np.int64) * 1_000_000
    order = np.argsort(event_us, kind="stable")
    codes = entity_codes(entities)
    code_idx = np.tile(np.arange(entities), hours)[order]
    start_us = START.astype(np.int64)
    ts = pa.timestamp("us", tz="UTC")
    columns: dict[str, pa.Array] = {
        "commodity_code": codes.take(pa.array(code_idx)),
        "event_timestamp": pa.array(event_us[order] + start_us, type=pa.int64()).cast(ts),
        "created": pa.array(created_us[order] + start_us, type=pa.int64()).cast(ts),
    }
    for name, values in _features(rng, entities, hours).items():
        columns[name] = pa.array(values.ravel()[order])
    return pa.table(columns)


def make_entity_df(spec: TickSpec, rows: int = 100_000, seed: int | None = None) -> pa.Table:
    """Random (entity, second in the span) requests, ``req_id`` 0 … rows-1."""
    rng = np.random.default_rng(spec.seed + 1 if seed is None else seed)
    codes = entity_codes(spec.entities)
    idx = rng.integers(0, spec.entities, size=rows)
    seconds = rng.integers(0, spec.hours * 3_600, size=rows, dtype=np.int64)
    ts_us = START.astype(np.int64) + seconds * 1_000_000
    return pa.table(
        {
            "req_id": pa.array(np.arange(rows, dtype=np.int64)),
            "commodity_code": codes.take(pa.array(idx)),
            "event_timestamp": pa.array(ts_us, type=pa.int64()).cast(pa.timestamp("us", tz="UTC")),
        }
    )


def make_distinct_ticks(entities: int = 1_000_000, seed: int = 42) -> pa.Table:
    """W1b: ``entities`` distinct entities with one row each, in the first hour."""
    return make_ticks(TickSpec(entities=entities, hours=1, seed=seed))


def write_parquet(table: pa.Table, path: Path) -> Path:
    """Write atomically (temp file + rename) with bounded row groups."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp, row_group_size=ROW_GROUP_ROWS)
    tmp.replace(path)
    return path


def _rows(path: Path) -> int:
    return int(pq.ParquetFile(path).metadata.num_rows)


def ticks_name(spec: TickSpec) -> str:
    """File name of a ticks file: the WORKLOADS.md name at the default size, else size-tagged."""
    if spec == TickSpec():
        return "commodity_ticks.parquet"
    return f"commodity_ticks_{spec.entities}x{spec.hours}_s{spec.seed}.parquet"


def ensure_ticks(data_dir: Path, spec: TickSpec = TickSpec(), name: str | None = None) -> Path:
    """Path of the ticks file in ``data_dir``, generated if missing (an existing file is reused)."""
    path = data_dir / (name or ticks_name(spec))
    if not path.exists():
        write_parquet(make_ticks(spec), path)
    return path


def ensure_entity_df(data_dir: Path, spec: TickSpec = TickSpec(), rows: int = 100_000) -> Path:
    """Path of the entity frame in ``data_dir``, generated if missing."""
    name = "entity_df.parquet" if (spec, rows) == (TickSpec(), 100_000) else f"entity_df_{rows}_{ticks_name(spec)}"
    path = data_dir / name
    if not path.exists():
        write_parquet(make_entity_df(spec, rows), path)
    return path


def ensure_distinct_ticks(data_dir: Path, entities: int = 1_000_000) -> Path:
    """Path of the W1b file (``entities`` distinct entities x 1 row), generated if missing."""
    suffix = "" if entities == 1_000_000 else f"_{entities}"
    name = f"commodity_ticks_distinct{suffix}.parquet"
    path = data_dir / name
    if not path.exists():
        write_parquet(make_distinct_ticks(entities), path)
    return path


def main(argv: list[str] | None = None) -> int:
    """Generate (or report) the benchmark files; prints their paths and row counts as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", "--data", dest="out", type=Path, default=DEFAULT_DIR, help="directory of the files")
    parser.add_argument("--entities", type=int, default=10_000)
    parser.add_argument("--hours", type=int, default=100)
    parser.add_argument("--entity-rows", type=int, default=100_000, help="rows of entity_df")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--variant", choices=["ticks", "w1b"], default="ticks")
    parser.add_argument("--force", action="store_true", help="regenerate even if the files exist")
    args = parser.parse_args(argv)
    spec = TickSpec(args.entities, args.hours, args.seed)
    started = time.perf_counter()
    if args.force:
        for old in args.out.glob("*.parquet"):
            old.unlink()
    if args.variant == "w1b":
        paths = [ensure_distinct_ticks(args.out, args.entities if args.entities != 10_000 else 1_000_000)]
    else:
        paths = [ensure_ticks(args.out, spec), ensure_entity_df(args.out, spec, args.entity_rows)]
    out = {str(p): _rows(p) for p in paths}
    print(json.dumps({"files": out, "seconds": round(time.perf_counter() - started, 2)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
