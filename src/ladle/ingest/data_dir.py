"""Where a feature repo's raw data lives: the ``data_dir`` setting, or the ``LADLE_DATA_DIR`` override.

A repo's ingestion module names its data directory once, at import::

    DATA_DIR = RepoDataDir(__file__)

and uses it as a path (``load(DATA_DIR)``, ``DATA_DIR / "wti.parquet"``). The directory is looked up
only when first used, so loading the repo for ``plan`` or ``apply`` never needs the data, and a
missing directory is one :class:`~ladle.errors.DataDirError` naming the setting to change, not a
traceback. Precedence: ``LADLE_DATA_DIR`` (relative to the working directory), then ``data_dir`` in
the repo's ``feature_store.yaml`` (relative to the repo).
"""

from __future__ import annotations

import os
from pathlib import Path

from ladle.config import load_yaml, resolve_path
from ladle.errors import DataDirError

ENV_VAR = "LADLE_DATA_DIR"
SETTING = "data_dir"


class RepoDataDir(os.PathLike[str]):
    """The raw-data directory of the repo holding ``anchor`` (a file or directory of the repo)."""

    def __init__(self, anchor: str | Path) -> None:
        path = Path(anchor).resolve()
        self.repo = path.parent if path.is_file() else path

    def resolve(self) -> Path:
        """The directory; :class:`DataDirError` if it is not configured or does not exist."""
        override = os.environ.get(ENV_VAR)
        if override:
            path, origin = Path(override).expanduser().resolve(), f"{ENV_VAR}={override}"
        else:
            yaml_file = self.repo / "feature_store.yaml"
            config = load_yaml(yaml_file, self.repo)
            value = config.data_dir
            if value is None:
                raise DataDirError(
                    f"{yaml_file} sets no {SETTING}: add '{SETTING}: PATH' (the directory of the raw data "
                    f"files, relative to the repo) or set {ENV_VAR} (see docs/configuration.md)"
                )
            path, origin = resolve_path(config, value).resolve(), f"{SETTING}: {value} in {yaml_file}"
        if not path.is_dir():
            raise DataDirError(
                f"data directory {path} does not exist ({origin}): point {SETTING} in feature_store.yaml "
                f"(relative to the repo) or {ENV_VAR} at the directory holding the raw data files"
            )
        return path

    def __fspath__(self) -> str:
        return str(self.resolve())

    def __truediv__(self, other: str | os.PathLike[str]) -> Path:
        return self.resolve() / other

    def __repr__(self) -> str:
        return f"RepoDataDir({str(self.repo)!r})"
