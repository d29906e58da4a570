"""``DuckDBRetrievalJob``: a point-in-time query, run when its result is asked for."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa

from ladle.errors import BackendError, DataSourceError
from ladle.offline.sources import literal

if TYPE_CHECKING:
    import duckdb
    import pandas as pd

    from ladle.definitions.saved_dataset import ValidationReference


@contextmanager
def translate_errors(what: str) -> Iterator[None]:
    """Turn DuckDB's exceptions into Ladle's (files gone or unreadable → DataSourceError)."""
    import duckdb

    try:
        yield
    except (duckdb.IOException, duckdb.InvalidInputException) as exc:
        raise DataSourceError(f"{what}: cannot read the source: {exc}") from exc
    except duckdb.Error as exc:
        raise BackendError(f"{what} failed in DuckDB: {exc}") from exc


class DuckDBRetrievalJob:
    """A historical retrieval over one DuckDB connection that holds the entity frame.

    The query is built when the job is created (the source file lists are fixed then) and runs
    on every call to :meth:`to_arrow`, :meth:`to_df`, :meth:`to_parquet` or :meth:`to_csv`.
    ``sql`` reads the entity frame from the relation ``__ladle_entity``.
    """

    def __init__(self, con: duckdb.DuckDBPyConnection, sql: str, entity: pa.Table) -> None:
        self._con = con
        self._sql = sql
        self._entity = entity  # keeps the registered Arrow buffers alive
        self._lock = threading.Lock()
        self.snapshots: dict[str, int] = {}  # Parquet files keep no snapshots

    @property
    def sql(self) -> str:
        """The query this job runs."""
        return self._sql

    def to_arrow(self) -> pa.Table:
        """Run and return the result as an Arrow table (timestamps in UTC)."""
        with self._lock, translate_errors("historical retrieval"):
            table: pa.Table = self._con.sql(self._sql).to_arrow_table()
        return table

    def to_df(self, validation_reference: ValidationReference | None = None) -> pd.DataFrame:
        """Run and return the result as a pandas DataFrame (checked against ``validation_reference``, if given:
        ValidationFailed when it does not match)."""
        from ladle.offline.validation import check

        frame: pd.DataFrame = self.to_arrow().to_pandas()
        return check(frame, validation_reference)

    def to_parquet(self, path: str | Path) -> None:
        """Stream the result into a Parquet file (DuckDB ``COPY``; written to a temp file, then renamed)."""
        self._copy(Path(path), "FORMAT parquet")

    def to_csv(self, path: str | Path) -> None:
        """Stream the result into a CSV file with a header row."""
        self._copy(Path(path), "FORMAT csv, HEADER true")

    def _copy(self, path: Path, options: str) -> None:
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        try:
            with self._lock, translate_errors("historical retrieval"):
                self._con.execute(f"COPY ({self._sql}) TO {literal(str(tmp))} ({options})")
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    def __repr__(self) -> str:
        return f"DuckDBRetrievalJob(rows={self._entity.num_rows})"
