"""Creating, evolving and writing the Iceberg tables Ladle owns (shared by the store and the stream sink).

* :func:`ensure_table` loads a table, or creates it (and its namespace) from the first rows'
  Arrow schema, partitioned on the event-time column by the configured transform (``day`` by
  default) so reads prune whole partitions; columns the rows add are added to the table first
  (schema evolution: older data files read them as NULL).
* :func:`conform` casts rows to the table's Arrow schema (timestamps to ``timestamp[us, UTC]``,
  which is what Iceberg's ``timestamptz`` holds; columns the rows lack become NULL).

Every write is one Iceberg commit (a snapshot): a reader sees all of its rows or none.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import pyarrow as pa

from ladle.errors import DataSourceError, SchemaMismatchError
from ladle.offline.iceberg.catalog import TableRef, brief

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog
    from pyiceberg.table import Table

_US = pa.timestamp("us", tz="UTC")


def _transform(partition_by: str) -> object:
    from pyiceberg.transforms import DayTransform, HourTransform, MonthTransform, YearTransform

    return {"hour": HourTransform, "day": DayTransform, "month": MonthTransform, "year": YearTransform}[partition_by]()


def _storable(schema: pa.Schema) -> pa.Schema:
    """The schema as Iceberg stores it: every timestamp as microseconds (UTC when it has a zone, or naive)."""
    fields = []
    for f in schema:
        t = f.type
        if pa.types.is_timestamp(t):
            t = _US if t.tz is not None else pa.timestamp("us")
        elif pa.types.is_large_string(t) or pa.types.is_string_view(t):
            t = pa.string()
        elif pa.types.is_dictionary(t):
            t = t.value_type
        fields.append(pa.field(f.name, t, nullable=True))
    return pa.schema(fields)


def load_table(catalog: Catalog, ref: TableRef) -> Table | None:
    """The table, or None if it does not exist; DataSourceError if the catalog cannot be read."""
    from pyiceberg.exceptions import NoSuchNamespaceError, NoSuchTableError

    try:
        return catalog.load_table(ref.identifier)
    except (NoSuchTableError, NoSuchNamespaceError):
        return None
    except Exception as exc:  # catalog I/O: SQLAlchemy, HTTP, file system
        raise DataSourceError(f"cannot load iceberg table {ref} from its catalog: {brief(exc)}") from exc


def ensure_table(
    catalog: Catalog, ref: TableRef, schema: pa.Schema, timestamp_field: str, partition_by: str = "day"
) -> Table:
    """The table for rows of ``schema``: loaded (with any new columns added) or created, partitioned by
    ``partition_by`` (``none``: unpartitioned) of ``timestamp_field``."""
    from pyiceberg.exceptions import NamespaceAlreadyExistsError, TableAlreadyExistsError

    storable = _storable(schema)
    table = load_table(catalog, ref)
    if table is None:
        namespace = ref.identifier.rsplit(".", 1)[0]
        with contextlib.suppress(NamespaceAlreadyExistsError):
            catalog.create_namespace(namespace)
        try:
            table = catalog.create_table(ref.identifier, schema=storable)
        except TableAlreadyExistsError:  # created by a concurrent writer
            table = catalog.load_table(ref.identifier)
        else:
            if partition_by != "none" and timestamp_field in storable.names:
                with table.update_spec() as spec:
                    spec.add_field(timestamp_field, partition_by, f"{timestamp_field}_{partition_by}")
        return table
    current = table.schema().as_arrow()
    added = [f for f in storable if f.name not in current.names]
    if added:
        try:
            with table.update_schema() as update:
                update.union_by_name(pa.schema(added))
        except Exception as exc:  # pyiceberg's ValidationError and friends
            raise SchemaMismatchError(f"cannot add columns {[f.name for f in added]} to {ref}: {brief(exc)}") from exc
    return table


def conform(rows: pa.Table, table: Table) -> pa.Table:
    """``rows`` with the table's columns, in its order and types (missing ones NULL); SchemaMismatchError
    when a column cannot be cast."""
    return conform_to(rows, table.schema().as_arrow())


def new_columns(schema: pa.Schema, table: Table) -> list[pa.Field]:
    """The fields of ``schema`` (as Iceberg would store them) that the table does not have."""
    current = table.schema().as_arrow().names
    return [f for f in _storable(schema) if f.name not in current]


def conform_to(rows: pa.Table, target: pa.Schema) -> pa.Table:
    """``rows`` with the columns of the Arrow schema ``target`` (see :func:`conform`)."""
    columns = []
    for field in target:
        if field.name not in rows.column_names:
            columns.append(pa.nulls(rows.num_rows, field.type))
            continue
        column = rows.column(field.name)
        if pa.types.is_dictionary(column.type):
            column = column.cast(column.type.value_type)
        if not column.type.equals(field.type):
            try:
                column = column.cast(field.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise SchemaMismatchError(
                    f"column '{field.name}' is {column.type} but the table stores {field.type}: {exc}"
                ) from exc
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=pa.schema([pa.field(f.name, f.type, nullable=True) for f in target]))
