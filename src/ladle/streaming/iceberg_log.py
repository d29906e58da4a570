"""The accepted events of one Kafka source, appended to the Iceberg table backing its batch source.

Which table: :func:`ladle.offline.iceberg.catalog.table_ref` (an ``IcebergSource`` names it; a
``FileSource`` named ``X`` is ``<namespace>.X`` of the store's catalog). The table is created on
the first flush if it does not exist (day partitions on the event time, by default), and columns
the events add are added to it (:func:`ladle.offline.iceberg.tables.ensure_table`).

* **One commit per flush.** :meth:`IcebergLog.write_all` appends the events of every partition of
  the flush as one Iceberg snapshot, whose summary records what it holds::

      ladle.kafka.source   = ticks
      ladle.kafka.topic    = commodity-ticks
      ladle.kafka.offsets  = {"0": [1200, 1999], "3": [877, 1420]}   # partition: [first, last]

  A concurrent commit to the table (another stream process, ``ladle ingest``) makes pyiceberg
  refresh and retry the append (``commit.retry.*`` table properties).
* **Exactly once.** The stream commits a partition's Kafka offset only after the snapshot holding
  its events is committed. Events written but never committed (a crash between the two) are the
  partition's rows at or past the committed offset: :meth:`IcebergLog.truncate_from` deletes them
  (an Iceberg delete filtered on ``_kafka_partition`` and ``_kafka_offset``) when the partition is
  assigned, before it is read again. Deleting (rather than skipping them when they come again) keeps
  the engine's restore exact: :meth:`read_recent` then reads only committed events. The snapshot
  summaries tell when there is nothing to delete (the partition's newest flush ends before the
  committed offset), so an assignment usually reads no data file.
* **Manifests.** The table gets ``commit.manifest-merge.enabled=true`` unless it has the property:
  appends then merge small manifests instead of adding one per flush for every scan to read.
* **Restore.** :meth:`IcebergLog.read_recent` is a scan with the filter pushed down to pyiceberg
  (partition pruning on the event time, file pruning on the ``_kafka_*`` statistics): the newest
  event time is bounded from the data files' column statistics, so a restore reads the recent data
  files, not the table.

Rows not written by the stream (``_kafka_partition`` NULL, e.g. from ``ladle ingest``) are never
deleted or read back here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from ladle.definitions import KafkaSource
from ladle.errors import DataSourceError, LadleError
from ladle.offline.iceberg.catalog import Catalogs, IcebergOfflineStoreConfig, TableRef, table_ref
from ladle.offline.iceberg.tables import conform, ensure_table, load_table
from ladle.streaming.decode import OFFSET, PARTITION

if TYPE_CHECKING:
    from pyiceberg.expressions import BooleanExpression
    from pyiceberg.table import Table

#: snapshot summary properties of the stream's appends
SOURCE_PROPERTY = "ladle.kafka.source"
TOPIC_PROPERTY = "ladle.kafka.topic"
OFFSETS_PROPERTY = "ladle.kafka.offsets"
#: the stream turns manifest merging on for its table (unless set): a flush a second would otherwise
#: leave one manifest per flush for every later scan to read
MERGE_PROPERTY = "commit.manifest-merge.enabled"
#: appends tried when concurrent writers keep winning the race (each with pyiceberg's commit.retry.*)
_APPEND_ATTEMPTS = 3


def _where(*terms: tuple[str, str, int]) -> BooleanExpression:
    """``And`` of ``(column, op, value)`` predicates, op ``=`` or ``>=`` (pyiceberg expressions)."""
    import pyiceberg.expressions as ex

    kinds: dict[str, Any] = {"=": ex.EqualTo, ">=": ex.GreaterThanOrEqual}
    predicates: list[BooleanExpression] = [kinds[op](column, value) for column, op, value in terms]
    return predicates[0] if len(predicates) == 1 else ex.And(*predicates)


def _error(what: str, ref: TableRef, exc: Exception) -> DataSourceError:
    return DataSourceError(f"cannot {what} iceberg table {ref}: {type(exc).__name__}: {exc}")


class IcebergLog:
    """Appends, deletes and reads one Kafka source's events in its Iceberg table."""

    def __init__(
        self, source: KafkaSource, block: IcebergOfflineStoreConfig, repo_path: Path, schema: pa.Schema
    ) -> None:
        self.source = source
        self.topic = source.topic
        self.block = block
        self.repo_path = repo_path
        self.ref = table_ref(source, block)
        self.schema = schema
        mapping = source.batch_source.field_mapping  # table column → view name
        self._to_table = {dst: src for src, dst in mapping.items()}
        self._from_table = dict(mapping)
        self._ts = self._to_table.get(source.timestamp_field, source.timestamp_field)
        self._catalogs = Catalogs(block, repo_path)
        self._probe_catalogs: Catalogs | None = None  # readiness runs on another thread: its own connections
        self._table: Table | None = None
        self._merge_checked = False

    @property
    def location(self) -> str:
        """``namespace.table`` (``catalog:namespace.table`` for a named catalog)."""
        return str(self.ref)

    @property
    def shared_by_topic(self) -> bool:
        """False: partitions and offsets of two topics would be mixed in one table."""
        return False

    # -- table ------------------------------------------------------------------------------------

    def _current(self) -> Table | None:
        """The table with fresh metadata, or None when it does not exist yet."""
        if self._table is None:
            self._table = load_table(self._catalogs.get(self.ref.catalog), self.ref)
            return self._table
        try:
            self._table.refresh()
        except Exception as exc:  # catalog I/O
            raise _error("refresh", self.ref, exc) from exc
        return self._table

    def _for_rows(self, schema: pa.Schema) -> Table:
        """The table, created or with the columns of ``schema`` added when it lacks any."""
        table = self._current()
        if table is None or set(schema.names) - set(table.schema().column_names):
            table = ensure_table(
                self._catalogs.get(self.ref.catalog), self.ref, schema, self._ts, self.block.partition_by
            )
            self._table = table
        if not self._merge_checked:
            if MERGE_PROPERTY not in table.properties:
                try:
                    with table.transaction() as tx:
                        tx.set_properties({MERGE_PROPERTY: "true"})
                except Exception as exc:
                    raise _error("set properties of", self.ref, exc) from exc
            self._merge_checked = True
        return table

    def _last_flushed(self, table: Table, partition: int) -> int | None:
        """The last offset of the partition's newest flush, from the snapshot summaries (None: no
        summary of one is left, e.g. expired). Rows past it cannot be in the table: a flush past it
        came before a truncation that deleted it."""
        from pyiceberg.table.snapshots import ancestors_of

        key = f'"{partition}":'
        for snapshot in ancestors_of(table.current_snapshot(), table.metadata):
            summary = snapshot.summary.additional_properties if snapshot.summary is not None else {}
            raw = summary.get(OFFSETS_PROPERTY)
            if raw is None or key not in raw or summary.get(SOURCE_PROPERTY) != self.source.name:
                continue
            last: int = json.loads(raw)[str(partition)][1]
            return last
        return None

    # -- the sink ----------------------------------------------------------------------------------

    def write_all(self, batches: Mapping[int, pa.Table]) -> None:
        """Append every partition's events as one snapshot, with their offsets in its summary."""
        parts = {p: t for p, t in batches.items() if t.num_rows}
        if not parts:
            return
        events = pa.concat_tables(parts.values()) if len(parts) > 1 else next(iter(parts.values()))
        rows = events.rename_columns([self._to_table.get(n, n) for n in events.column_names])
        rows = rows.replace_schema_metadata(None)
        offsets = {
            str(p): [int(t.column(OFFSET)[0].as_py()), int(t.column(OFFSET)[-1].as_py())]
            for p, t in sorted(parts.items())
        }
        properties = {
            SOURCE_PROPERTY: self.source.name,
            TOPIC_PROPERTY: self.topic,
            OFFSETS_PROPERTY: json.dumps(offsets, separators=(",", ":")),
        }
        from pyiceberg.exceptions import CommitFailedException

        for attempt in range(_APPEND_ATTEMPTS):
            table = self._for_rows(rows.schema)
            try:
                table.append(conform(rows, table), snapshot_properties=properties)
                return
            except LadleError:
                raise
            except CommitFailedException as exc:  # lost the race after pyiceberg's own retries: did not land
                if attempt + 1 == _APPEND_ATTEMPTS:
                    raise _error("append to", self.ref, exc) from exc
            except Exception as exc:  # I/O errors; the outcome is unknown, so the stream stops (and replays)
                raise _error("append to", self.ref, exc) from exc

    def truncate_from(self, partition: int, start: int) -> int:
        """Delete the partition's rows with offset ≥ ``start`` (one commit, none when there are none);
        how many rows were deleted."""
        table = self._current()
        if table is None or not {PARTITION, OFFSET} <= set(table.schema().column_names):
            return 0
        last = self._last_flushed(table, partition)
        if last is not None and last < start:  # the usual case: nothing written past the commit
            return 0
        written = _where((PARTITION, "=", partition), (OFFSET, ">=", start))
        found: int = self._scan(table, written, (OFFSET,)).num_rows
        if not found:
            return 0
        try:
            table.delete(written, snapshot_properties={SOURCE_PROPERTY: self.source.name, TOPIC_PROPERTY: self.topic})
        except Exception as exc:
            raise _error("delete uncommitted events from", self.ref, exc) from exc
        return found

    def read_recent(self, partition: int, lookback_us: int) -> pa.Table:
        """The partition's events with event time ≥ (its newest event time - ``lookback_us``), by offset."""
        table = self._current()
        if table is None or not {PARTITION, OFFSET, self._ts} <= set(table.schema().column_names):
            return self.schema.empty_table()
        mine = (PARTITION, "=", partition)
        bound = self._newest_bound(table, _where(mine))
        if bound is None:
            return self.schema.empty_table()
        # The newest event time is at most the files' bound; look for it just below the bound first.
        newest = self._newest(table, _where(mine, (self._ts, ">=", bound - lookback_us)))
        if newest is None:  # this partition's events are all older than the window below the bound
            newest = self._newest(table, _where(mine))
        if newest is None:
            return self.schema.empty_table()
        rows = self._scan(table, _where(mine, (self._ts, ">=", newest - lookback_us)), None)
        return self._as_events(rows).sort_by(OFFSET)

    def probe_writable(self) -> None:
        """Raise DataSourceError unless the catalog answers (and the table, if it exists, loads)."""
        if self._probe_catalogs is None:
            self._probe_catalogs = Catalogs(self.block, self.repo_path)
        try:
            catalog = self._probe_catalogs.get(self.ref.catalog)
            load_table(catalog, self.ref)
        except LadleError as exc:
            raise DataSourceError(f"iceberg catalog for {self.ref} is not usable: {exc}") from exc

    # -- reading -----------------------------------------------------------------------------------

    def _scan(self, table: Table, where: BooleanExpression, columns: tuple[str, ...] | None) -> pa.Table:
        try:
            scan = table.scan(row_filter=where, selected_fields=columns or ("*",))
            return scan.to_arrow()
        except Exception as exc:
            raise _error("read", self.ref, exc) from exc

    def _newest(self, table: Table, where: BooleanExpression) -> int | None:
        import pyarrow.compute as pc

        column = self._scan(table, where, (self._ts,)).column(self._ts)
        top: int | None = pc.max(column.cast(pa.int64())).as_py() if len(column) else None
        return top

    def _newest_bound(self, table: Table, where: BooleanExpression) -> int | None:
        """The largest upper bound of the event time over the data files that may hold ``where``'s rows
        (from the manifests: no data file is read); None when no file may hold any."""
        from pyiceberg.conversions import from_bytes
        from pyiceberg.types import PrimitiveType

        field = table.schema().find_field(self._ts)
        if not isinstance(field.field_type, PrimitiveType):
            raise DataSourceError(f"iceberg table {self.ref}: event time column '{self._ts}' is {field.field_type}")
        best: int | None = None
        try:
            tasks = list(table.scan(row_filter=where).plan_files())
        except Exception as exc:
            raise _error("plan a scan of", self.ref, exc) from exc
        for task in tasks:
            raw = (task.file.upper_bounds or {}).get(field.field_id)
            value: Any = from_bytes(field.field_type, raw) if raw is not None else None
            if not isinstance(value, int):  # no statistics: no bound from the manifests
                return self._newest(table, where)
            best = value if best is None else max(best, value)
        return best

    def _as_events(self, rows: pa.Table) -> pa.Table:
        rows = rows.rename_columns([self._from_table.get(n, n) for n in rows.column_names])
        columns = []
        for name in self.schema.names:
            want = self.schema.field(name).type
            if name in rows.column_names:
                columns.append(rows.column(name).cast(want))
            else:  # a column the table does not have (yet)
                columns.append(pa.nulls(rows.num_rows, want))
        return pa.Table.from_arrays(columns, schema=self.schema)
