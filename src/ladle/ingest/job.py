"""``Ingestion``: a repo-declared job that computes one view's feature rows and stores them offline.

>>> Ingestion(name="weather", feature_view="weather_features", compute=compute_weather)

``compute(window)`` returns an Arrow table with the view's join keys, features and the source's
timestamp columns (it may return more rows than the window; they are dropped), or, for outputs
too large to hold at once, an iterable of such tables or record batches (a generator), consumed
piece by piece. ``run_ingestion`` checks the rows against the view, then replaces the rows inside
the window, so re-running a window adds nothing: through the offline store's ``replace_window``
when it has one (Iceberg, Doris: one commit replacing every row of the source in the window,
docs/iceberg.md, when the rows fit a quarter of ``materialization.memory_budget``; larger outputs
are staged on disk and replaced time chunk by time chunk, :mod:`ladle.ingest.windows`), else in the view's Parquet
directory, where only the job's own partition files are rewritten, in memory bounded by
``materialization.memory_budget`` whatever the size of the output (see :mod:`ladle.ingest.partitions`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa

from ladle.config import RepoConfig, parse_size, resolve_path
from ladle.definitions import FeatureView, FileSource
from ladle.definitions._common import check_name
from ladle.errors import DataSourceError, DefinitionError, SchemaMismatchError
from ladle.ingest.partitions import Granularity, Rows, pieces, replace_window
from ladle.ingest.windows import replace_bounded
from ladle.offline.base import OfflineStore, WindowReplacer, open_offline_store
from ladle.types import compatible, dtype_from_arrow

_MIN = datetime(1900, 1, 1, tzinfo=UTC)
_MAX = datetime(2200, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class IngestWindow:
    """The event-time window ``[start, end)`` an ingestion run is asked to produce (UTC)."""

    start: datetime
    end: datetime


@dataclass(frozen=True)
class Ingestion:
    """Compute rows for ``feature_view`` from raw data; declared in a feature repo."""

    name: str
    feature_view: str
    compute: Callable[[IngestWindow], Rows]
    partition: Granularity = "month"
    description: str = ""
    tags: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_name("ingestion", self.name)
        if not callable(self.compute):
            raise DefinitionError(f"ingestion '{self.name}': compute must be a callable taking an IngestWindow")


@dataclass(frozen=True)
class IngestResult:
    """What one ingestion run did."""

    name: str
    feature_view: str
    start: datetime
    end: datetime
    rows: int
    directory: Path | None  # the Parquet directory written, or None when the offline store replaced the window


def _directory(config: RepoConfig, view: FeatureView) -> Path:
    source = view.batch_source
    if not isinstance(source, FileSource) or not source.path.endswith("/"):
        raise DataSourceError(
            f"feature view '{view.name}': ingestion needs a FileSource whose path is a directory "
            f"ending in '/', got {getattr(source, 'path', source)!r}"
        )
    return resolve_path(config, source.path)


def check_rows(view: FeatureView, rows: pa.Table) -> pa.Table:
    """Rows with exactly the view's columns, cast to its dtypes; :class:`SchemaMismatchError` if impossible."""
    src = view.batch_source
    wanted = [*view.entity_columns, *view.features]
    stamps = [c for c in (src.timestamp_field, src.created_timestamp_column) if c]
    missing = [f.name for f in wanted if f.name not in rows.column_names] + [
        c for c in stamps if c not in rows.column_names
    ]
    if missing:
        raise SchemaMismatchError(f"ingestion rows for '{view.name}' lack columns {missing}")
    columns: dict[str, pa.Array | pa.ChunkedArray] = {}
    for f in wanted:
        column = rows.column(f.name)
        if not compatible(f.dtype, dtype_from_arrow(column.type)) and not pa.types.is_null(column.type):
            raise SchemaMismatchError(
                f"ingestion column '{f.name}' of '{view.name}' is {column.type}, expected {f.dtype}"
            )
        columns[f.name] = column.cast(f.dtype.arrow)
    for name in stamps:
        columns[name] = rows.column(name).cast(pa.timestamp("us", tz="UTC"))
    return pa.table(columns)


def run_ingestion(
    config: RepoConfig,
    ingestion: Ingestion,
    view: FeatureView,
    start: datetime | None = None,
    end: datetime | None = None,
    offline_store: OfflineStore | None = None,
) -> IngestResult:
    """Run one ingestion for ``[start, end)``.

    Without a window the ingestion's output replaces all of its earlier rows (whatever their time);
    with one, only its rows inside the window are replaced. An offline store with
    ``replace_window`` (default: the one ``config`` opens) replaces the window in one commit;
    otherwise the rows go to the view's Parquet directory.
    """
    if view.name != ingestion.feature_view:
        raise DefinitionError(f"ingestion '{ingestion.name}' feeds '{ingestion.feature_view}', not '{view.name}'")
    store = offline_store if offline_store is not None else open_offline_store(config)
    replacer = store if isinstance(store, WindowReplacer) else None
    directory = None if replacer is not None else _directory(config, view)
    lo = _utc(start) if start is not None else _MIN
    hi = _utc(end) if end is not None else _MAX
    checked = _checked(view, ingestion.compute(IngestWindow(lo, hi)))
    source = view.batch_source
    if replacer is not None:
        inverse = {dst: src for src, dst in source.field_mapping.items()}

        def replace(rows: pa.Table, start: datetime, end: datetime) -> int:
            rows = rows.rename_columns([inverse.get(n, n) for n in rows.column_names])
            return replacer.replace_window(source, rows, start, end)

        empty = _empty(view)
        chunk = window_chunk_bytes(config)
        written = replace_bounded(checked, source.timestamp_field, lo, hi, replace, empty, chunk)
    else:
        assert directory is not None
        written = replace_window(
            directory,
            ingestion.name,
            checked,
            source.timestamp_field,
            lo,
            hi,
            ingestion.partition,
            memory_limit=merge_memory(config),
        )
    return IngestResult(ingestion.name, view.name, lo, hi, written, directory)


def merge_memory(config: RepoConfig) -> int:
    """DuckDB memory of a partition merge: a quarter of ``materialization.memory_budget``.

    The rest is the process itself (~200 MB of libraries) and the piece being staged.
    """
    return parse_size(config.materialization.memory_budget) // 4


def _checked(view: FeatureView, rows: Rows) -> Iterator[pa.Table]:
    """Each piece of ``rows`` checked and cast to the view (:func:`check_rows`), lazily."""
    for piece in pieces(rows):
        yield check_rows(view, piece)


#: ``memory_budget`` / this: Arrow bytes of rows per window replacement. The store's overwrite holds
#: several copies while it writes (Iceberg: conformed rows, their IPC hash, one table per day
#: partition, Parquet encoders: ~4-5x the chunk measured) and what the allocator keeps after the first
#: overwrite (~200 MB more, measured), on top of ~250-320 MB of process. With /24 an 800 MB budget
#: peaked at 736-804 MB across runs (test_ingest_windows); /48 at 699-714 MB.
WINDOW_CHUNK_SHARE = 48


def window_chunk_bytes(config: RepoConfig) -> int:
    """Rows (Arrow bytes) one window replacement of a store holds: ``memory_budget / WINDOW_CHUNK_SHARE``."""
    return parse_size(config.materialization.memory_budget) // WINDOW_CHUNK_SHARE


def _empty(view: FeatureView) -> pa.Schema:
    src = view.batch_source
    fields = [pa.field(f.name, f.dtype.arrow) for f in [*view.entity_columns, *view.features]]
    fields += [
        pa.field(c, pa.timestamp("us", tz="UTC")) for c in (src.timestamp_field, src.created_timestamp_column) if c
    ]
    return pa.schema(fields)


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
