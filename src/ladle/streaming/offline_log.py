"""The accepted events of one Kafka source, kept in its batch source directory (rule 9).

Each flush of one partition becomes one Parquet file named by topic, partition and offset range::

    <batch source dir>/<topic>-p00003-00000000000000001200-00000000000000001999.parquet

written under a hidden temporary name and renamed into place, so readers (DuckDB, which skips
names starting with ``.``) see a whole file or nothing. The names sort by topic, partition and
offset. The stream process commits a partition's offset only past events that are in files, so
after a crash the files whose first offset is at or past the committed offset are the ones written
but never committed: :meth:`OfflineLog.truncate_from` deletes them before the partition is read
again, and nothing is stored twice.

Columns: the decoded events' columns (after the Kafka source's ``field_mapping``, renamed back
through the batch source's own ``field_mapping`` if it has one), plus ``_kafka_partition`` and
``_kafka_offset``.
"""

from __future__ import annotations

import fnmatch
import os
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ladle.definitions import FileSource, KafkaSource
from ladle.errors import DataSourceError, DefinitionError
from ladle.streaming.decode import OFFSET

_NAME = re.compile(r"^(?P<topic>[A-Za-z0-9._-]+)-p(?P<partition>\d{5,})-(?P<first>\d{20})-(?P<last>\d{20})\.parquet$")


@dataclass(frozen=True)
class OffsetFile:
    """One file of the log and the offsets it holds (inclusive)."""

    path: Path
    partition: int
    first: int
    last: int


def log_directory(source: KafkaSource, repo_path: Path) -> Path:
    """Where the stream adds the source's files: its batch source directory, or for a glob such as
    ``data/ticks/*.parquet`` the directory before the first wildcard (the names must match the glob)."""
    batch = source.batch_source
    if not isinstance(batch, FileSource):
        raise DefinitionError(f"kafka source '{source.name}': batch_source must be a FileSource directory")
    raw = batch.path.removeprefix("file://")
    path = Path(raw).expanduser()
    path = path if path.is_absolute() else repo_path / path
    if "://" in raw:
        raise DefinitionError(f"kafka source '{source.name}': batch_source path {raw!r} must be a local directory")
    if set("*?[") & set(raw):
        parts = path.parts
        first_wild = next(i for i, p in enumerate(parts) if set("*?[") & set(p))
        root = Path(*parts[:first_wild])
        sample = root / f"{source.topic}-p00000-{0:020d}-{0:020d}.parquet"
        if not fnmatch.fnmatch(str(sample), str(path)):
            raise DefinitionError(
                f"kafka source '{source.name}': batch_source glob {raw!r} would not match the stream's files "
                f"({sample.name}); use a directory or 'dir/*.parquet'"
            )
        return root
    if raw.endswith(".parquet") or path.is_file():
        raise DefinitionError(
            f"kafka source '{source.name}': batch_source path {raw!r} must be a directory "
            "(the stream process adds one file per partition and flush)"
        )
    return path


class OfflineLog:
    """Reads and writes one Kafka source's files in its batch source directory."""

    def __init__(self, source: KafkaSource, repo_path: Path, schema: pa.Schema) -> None:
        self.source = source
        self.topic = source.topic
        self.root = log_directory(source, repo_path)
        self.schema = schema
        mapping = source.batch_source.field_mapping  # file column → view name
        self._to_file = {dst: src for src, dst in mapping.items()}
        self._from_file = dict(mapping)
        self._ts = source.timestamp_field

    @property
    def location(self) -> str:
        """The directory the files go to."""
        return str(self.root)

    @property
    def shared_by_topic(self) -> bool:
        """True: the files are named by topic, so sources of different topics may share a directory."""
        return True

    def _prefix(self, partition: int) -> str:
        return f"{self.topic}-p{partition:05d}-"

    def files(self, partition: int) -> list[OffsetFile]:
        """The partition's files, by first offset."""
        if not self.root.is_dir():
            return []
        out: list[OffsetFile] = []
        for path in self.root.glob(f"{self._prefix(partition)}*.parquet"):
            match = _NAME.match(path.name)
            if match and match["topic"] == self.topic and int(match["partition"]) == partition:
                out.append(OffsetFile(path, partition, int(match["first"]), int(match["last"])))
        return sorted(out, key=lambda f: f.first)

    def write(self, partition: int, events: pa.Table) -> OffsetFile:
        """Write events (one partition, offset order) as one new file, atomically."""
        offsets = events.column(OFFSET)
        first, last = offsets[0].as_py(), offsets[-1].as_py()
        final = self.root / f"{self._prefix(partition)}{first:020d}-{last:020d}.parquet"
        self._write_atomic(final, events)
        return OffsetFile(final, partition, first, last)

    def write_all(self, batches: Mapping[int, pa.Table]) -> None:
        """Write each partition's events (offset order) as one new file per partition."""
        for partition, events in batches.items():
            if events.num_rows:
                self.write(partition, events)

    def _write_atomic(self, final: Path, events: pa.Table) -> None:
        table = events.rename_columns([self._to_file.get(n, n) for n in events.column_names])
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".{final.name}.{uuid.uuid4().hex[:8]}.tmp"
        try:
            pq.write_table(table.replace_schema_metadata(None), tmp)
            os.replace(tmp, final)
        except OSError as exc:
            raise DataSourceError(f"cannot write {final}: {exc}") from exc
        finally:
            tmp.unlink(missing_ok=True)

    def truncate_from(self, partition: int, start: int) -> int:
        """Remove every event with offset ≥ ``start`` of the partition (and stale temp files); return
        how many files were deleted or rewritten."""
        changed = 0
        if self.root.is_dir():
            for stale in self.root.glob(f".{self._prefix(partition)}*.tmp"):
                stale.unlink(missing_ok=True)
        for f in self.files(partition):
            if f.first >= start:
                f.path.unlink(missing_ok=True)
                changed += 1
            elif f.last >= start:  # only when the start moved into a file (topic retention, reset)
                kept = self._read(f.path)
                kept = kept.filter(pc.less(kept.column(OFFSET), start))
                if kept.num_rows:
                    self.write(partition, kept)
                f.path.unlink(missing_ok=True)
                changed += 1
        return changed

    def read_recent(self, partition: int, lookback_us: int) -> pa.Table:
        """The partition's events with event time ≥ (its newest event time - ``lookback_us``), by offset."""
        files = self.files(partition)
        if not files:
            return self.schema.empty_table()
        newest = {f.path: self._newest(f.path) for f in files}
        top = max((t for t in newest.values() if t is not None), default=None)
        if top is None:
            return self.schema.empty_table()
        cutoff = top - lookback_us
        parts = []
        for f in files:
            if (newest[f.path] or 0) < cutoff:
                continue
            table = self._read(f.path)
            ts = table.column(self._ts).cast(pa.int64())
            parts.append(table.filter(pc.greater_equal(ts, cutoff)))
        table = pa.concat_tables(parts) if parts else self.schema.empty_table()
        return table.sort_by(OFFSET)

    def _read(self, path: Path) -> pa.Table:
        table = pq.read_table(path)
        table = table.rename_columns([self._from_file.get(n, n) for n in table.column_names])
        columns = []
        for name in self.schema.names:
            want = self.schema.field(name).type
            if name in table.column_names:
                columns.append(table.column(name).cast(want))
            else:  # a column added to the format since the file was written
                columns.append(pa.nulls(table.num_rows, want))
        return pa.Table.from_arrays(columns, schema=self.schema)

    def _newest(self, path: Path) -> int | None:
        """The newest event time in a file (µs), from its Parquet statistics when present."""
        name = self._to_file.get(self._ts, self._ts)
        meta = pq.read_metadata(path)
        best: int | None = None
        index = meta.schema.names.index(name) if name in meta.schema.names else None
        if index is None:
            return None
        for i in range(meta.num_row_groups):
            stats = meta.row_group(i).column(index).statistics
            if stats is None or not stats.has_min_max or stats.physical_type != "INT64":
                column = pq.read_table(path, columns=[name]).column(0).cast(pa.int64())
                value = pc.max(column).as_py()
                return None if value is None else int(value)
            best = max(best if best is not None else stats.max_raw, stats.max_raw)
        return best

    def probe_writable(self) -> None:
        """Raise DataSourceError unless a file can be created in the directory."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe = self.root / f".ready-{uuid.uuid4().hex[:8]}.tmp"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise DataSourceError(f"batch source directory {self.root} is not writable: {exc}") from exc
