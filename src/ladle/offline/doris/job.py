"""``DorisRetrievalJob``: upload the entity frame to a work table, run one query, stream the result.

Only the entity frame's row number, join keys and times go to the server (``__ladle_w_<random>``
in ``work_database``, dropped afterwards, also on errors); its other columns stay in Python and
the features are appended to them in row order.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ladle.errors import BackendError, LadleError
from ladle.offline.doris import sql
from ladle.offline.doris.config import DorisOfflineStoreConfig
from ladle.offline.doris.connection import close_quietly, connect, translated
from ladle.offline.doris.values import parameter_rows, to_arrow
from ladle.types import DType

if TYPE_CHECKING:
    import pandas as pd
    import pymysql

    from ladle.definitions.saved_dataset import ValidationReference


@dataclass(frozen=True)
class Output:
    """One feature column of the result: its name and dtype."""

    name: str
    dtype: DType


@dataclass(frozen=True)
class WorkTable:
    """What is uploaded: column definitions (canonical types) and the rows."""

    columns: tuple[tuple[str, str], ...]
    rows: pa.Table  # the columns, in order, as Arrow


class DorisRetrievalJob:
    """A point-in-time join run on the server when its result is asked for (every call runs it)."""

    def __init__(
        self,
        block: DorisOfflineStoreConfig,
        entity: pa.Table,
        work: WorkTable,
        joins: Sequence[sql.ViewJoin],
        outputs: Sequence[Output],
        strategy: Callable[[pymysql.Connection[Any]], str],
    ) -> None:
        self._block = block
        self._entity = entity  # the frame's own columns, timestamp column in UTC
        self._work = work
        self._joins = list(joins)
        self._outputs = list(outputs)
        self._strategy = strategy
        self._last_sql = ""
        self.snapshots: dict[str, int] = {}  # the engine's tables are read as they are now

    def _query(self, work_name: str, strategy: str) -> str:
        canonical = sql.pit_sql(self._joins, work_name, strategy)
        return sql.render(canonical, self._block.type, sql.queries_of(self._joins))

    @property
    def sql(self) -> str:
        """The query (with the work table ``__ladle_w``; the last run's strategy, else the default one)."""
        if self._last_sql:
            return self._last_sql
        default = "window" if self._block.type != "mysql" else "lookup"
        return self._query(sql.qualified(self._block.work_db(), "__ladle_w"), default)

    @contextmanager
    def _uploaded(self) -> Iterator[tuple[pymysql.Connection[Any], str]]:
        """A connection with the entity rows in a fresh work table, and the query over it (dropped after)."""
        block = self._block
        name = sql.qualified(block.work_db(), f"__ladle_w_{uuid.uuid4().hex[:16]}")
        con = connect(block)
        try:
            with translated(block, "historical retrieval"):
                strategy = self._strategy(con)
                query = self._query(name, strategy)
                self._last_sql = query
                with con.cursor() as cur:
                    cur.execute(sql.create_table_sql(name, self._work.columns, block.type, key=[sql.ROW]))
                try:
                    self._upload(con, name)
                    yield con, query
                except BaseException:
                    # The connection may be gone or hold an unread result: drop from a fresh one.
                    close_quietly(con)
                    self._drop_quietly(name)
                    raise
                with con.cursor() as cur:
                    cur.execute(sql.drop_table_sql(name, block.type))
        finally:
            close_quietly(con)

    def _drop_quietly(self, name: str) -> None:
        """Drop a work table after a failure, best effort: the first error is the one to report.

        If the server is unreachable the table stays (``__ladle_w_*``, empty of anything but keys
        and times); it can be dropped by hand.
        """
        import pymysql

        try:
            con = connect(self._block)
        except LadleError:
            return
        try:
            with con.cursor() as cur:
                cur.execute(sql.drop_table_sql(name, self._block.type))
        except (pymysql.err.Error, OSError):
            pass  # best effort while the first error propagates
        finally:
            close_quietly(con)

    def _run(self) -> Iterator[pa.RecordBatch]:
        with self._uploaded() as (con, query):
            yield from self._stream(con, query)

    def explain(self) -> list[dict[str, Any]]:
        """The server's ``EXPLAIN`` of the query over the uploaded entity rows (one dict per plan row)."""
        with self._uploaded() as (con, query), con.cursor() as cur:
            cur.execute(f"EXPLAIN {query}")
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def _upload(self, con: pymysql.Connection[Any], name: str) -> None:
        insert = sql.insert_sql(name, [c for c, _ in self._work.columns], self._block.type)
        step = self._block.upload_batch_rows
        with con.cursor() as cur:
            for offset in range(0, self._work.rows.num_rows, step):
                cur.executemany(insert, parameter_rows(self._work.rows.slice(offset, step)))

    def _stream(self, con: pymysql.Connection[Any], query: str) -> Iterator[pa.RecordBatch]:
        import pymysql.cursors

        done = 0
        cur = con.cursor(pymysql.cursors.SSCursor)
        cur.execute(query)
        while rows := cur.fetchmany(self._block.fetch_batch_rows):
            columns = list(zip(*rows, strict=True))
            got = np.asarray(columns[0], dtype=np.int64)
            if not np.array_equal(got, np.arange(done, done + len(rows))):
                raise BackendError("historical retrieval: the server returned the rows out of order")
            arrays = [to_arrow(c, o.dtype, o.dtype.arrow) for c, o in zip(columns[1:], self._outputs, strict=True)]
            frame = self._entity.slice(done, len(rows)).combine_chunks()
            own = [c.chunk(0) if c.num_chunks else pa.array([], c.type) for c in frame.columns]
            done += len(rows)
            yield pa.RecordBatch.from_arrays([*own, *arrays], schema=self._schema())
        cur.close()  # every row read: the result is finished, the connection free
        if done != self._entity.num_rows:
            raise BackendError(f"historical retrieval: {done} rows came back for {self._entity.num_rows} entity rows")

    def _schema(self) -> pa.Schema:
        return pa.schema([*self._entity.schema, *(pa.field(o.name, o.dtype.arrow) for o in self._outputs)])

    def to_arrow(self) -> pa.Table:
        """Run and return the result as an Arrow table (the entity frame's columns, then the features)."""
        return pa.Table.from_batches(list(self._run()), schema=self._schema())

    def to_df(self, validation_reference: ValidationReference | None = None) -> pd.DataFrame:
        """Run and return the result as a pandas DataFrame (checked against ``validation_reference``, if given:
        ValidationFailed when it does not match)."""
        from ladle.offline.validation import check

        frame: pd.DataFrame = self.to_arrow().to_pandas()
        return check(frame, validation_reference)

    def to_parquet(self, path: str | Path) -> None:
        """Stream the result into a Parquet file (a temporary file renamed into place)."""
        path = Path(path)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        try:
            with pq.ParquetWriter(tmp, self._schema()) as writer:
                for batch in self._run():
                    writer.write_batch(batch)
            tmp.replace(path)
        finally:
            tmp.unlink(missing_ok=True)

    def to_csv(self, path: str | Path) -> None:
        """Write the result as CSV with a header row."""
        import pyarrow.csv as pcsv

        pcsv.write_csv(self.to_arrow(), str(path))

    def __repr__(self) -> str:
        return f"DorisRetrievalJob(rows={self._entity.num_rows}, views={len(self._joins)})"
