"""``get_historical_features``: validate an entity frame and hand it to the offline store.

The point-in-time rules are in docs/offline.md. This module owns the input side: the entity frame
(pandas, Arrow or a Parquet/CSV path) becomes an Arrow table, its timestamp column is found and
made UTC, its join keys are checked against the views, and every error is a typed Ladle error
raised before any query runs.

:func:`historical_job` takes a :class:`RegistrySnapshot` and an :class:`OfflineStore`, so it can be
used (and tested) without a registry::

    job = historical_job(snapshot, offline_store, entity_df, ["prices:current_price"])
    training = job.to_df()
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

import pandas as pd
import pyarrow as pa

from ladle.definitions import FeatureView
from ladle.definitions.refs import FeatureRequest, ViewSelection, resolve
from ladle.errors import EntityKeyError, RequestError
from ladle.types import EVENT_TIMESTAMP, DType, ValueType

if TYPE_CHECKING:
    from ladle.offline.base import AsOf, OfflineStore, RetrievalJob
    from ladle.registry.base import RegistrySnapshot

EntityFrame: TypeAlias = pd.DataFrame | pa.Table | str | Path
# Feast accepts an SQL query as entity_df on some stores; catch one so it is not reported as a missing file.
_SQL = re.compile(r"\s*(select|with)\s", re.IGNORECASE)


def historical_job(
    snapshot: RegistrySnapshot,
    offline_store: OfflineStore,
    entity_df: EntityFrame,
    features: FeatureRequest,
    full_feature_names: bool = False,
    bind: Callable[[Iterable[FeatureView]], list[FeatureView]] | None = None,
    as_of: AsOf | None = None,
) -> RetrievalJob:
    """Validate the request and build the offline store's retrieval job.

    ``as_of`` (an instant, or snapshot ids by source name) reads the sources as they were then;
    only stores that keep snapshots (Iceberg) accept it (docs/offline.md, "Time travel").

    ``bind`` gives registry views their transform functions (stream feature views with a udf or
    derive computed offline); ``FeatureStore`` passes one that reads the feature repo.

    Raises FeatureViewNotFoundError / FeatureNotFoundError / InvalidFeatureReferenceError for bad
    references, RequestError for a bad entity frame (empty, no timestamp column, unparseable
    times), EntityKeyError for a missing or mistyped join key column, DataSourceError when a
    view's source is missing or does not match the view.
    """
    from ladle.retrieval.on_demand import names_on_demand

    if names_on_demand(snapshot, features):  # ODFVs: over the joined frame
        from ladle.retrieval.on_demand import service_refs
        from ladle.retrieval.on_demand_historical import on_demand_job

        refs = list(service_refs(snapshot, features))
        return on_demand_job(snapshot, offline_store, entity_df, refs, full_feature_names, historical_job, bind, as_of)
    selections = resolve(snapshot, features, full_feature_names)
    if bind is not None:
        bound = bind(sel.view for sel in selections)
        selections = [dataclasses.replace(sel, view=v) for sel, v in zip(selections, bound, strict=True)]
    table = entity_table(entity_df)
    if table.num_rows == 0:
        raise RequestError("the entity frame is empty: give at least one row of join keys and a timestamp")
    ts_column = timestamp_column(table)
    table = _utc_timestamps(table, ts_column)
    selections = [_resolved(offline_store, sel) for sel in selections]
    table = _check_keys(table, selections)
    if as_of is None:
        return offline_store.historical(table, ts_column, selections, full_feature_names)
    return offline_store.historical(table, ts_column, selections, full_feature_names, as_of=as_of)


def entity_table(entity_df: EntityFrame) -> pa.Table:
    """The entity frame as an Arrow table (a path is read as Parquet, or CSV if it ends in ``.csv``)."""
    if isinstance(entity_df, pa.Table):
        return entity_df
    if isinstance(entity_df, pd.DataFrame):
        return _from_pandas(entity_df)
    if isinstance(entity_df, str) and _SQL.match(entity_df):
        raise RequestError(
            "entity_df looks like an SQL query, which Ladle does not run: pass the query's result as a "
            "pandas DataFrame or pyarrow Table, or a Parquet/CSV file path"
        )
    if isinstance(entity_df, (str, Path)):
        return _read_file(Path(entity_df))
    raise RequestError(
        f"entity_df must be a pandas DataFrame, a pyarrow Table or a path to a Parquet file, "
        f"got {type(entity_df).__name__}"
    )


def _from_pandas(frame: pd.DataFrame) -> pa.Table:
    names = [str(c) for c in frame.columns]
    if len(set(names)) != len(names):
        raise RequestError(f"the entity frame has duplicate column names: {names}")
    try:
        return pa.Table.from_pandas(frame.set_axis(names, axis=1), preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise RequestError(f"the entity frame cannot be converted to Arrow: {exc}") from exc


def _read_file(path: Path) -> pa.Table:
    if not path.is_file():
        raise RequestError(f"entity frame file {path} does not exist")
    try:
        if path.suffix.lower() == ".csv":
            import pyarrow.csv as pacsv

            return pacsv.read_csv(path)
        import pyarrow.parquet as pq

        return pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise RequestError(f"cannot read the entity frame {path}: {exc}") from exc


def timestamp_column(table: pa.Table) -> str:
    """``event_timestamp`` if present, else the single timestamp (or date) column."""
    if EVENT_TIMESTAMP in table.column_names:
        return EVENT_TIMESTAMP
    found: list[str] = [f.name for f in table.schema if pa.types.is_timestamp(f.type) or pa.types.is_date(f.type)]
    if len(found) == 1:
        return found[0]
    if not found:
        raise RequestError(
            f"the entity frame needs a timestamp column: name it '{EVENT_TIMESTAMP}' "
            f"(it has columns {table.column_names})"
        )
    raise RequestError(
        f"the entity frame has several timestamp columns {found}; name the one to join on '{EVENT_TIMESTAMP}'"
    )


def _utc_timestamps(table: pa.Table, name: str) -> pa.Table:
    """The timestamp column as timestamp[us, UTC]: naive values are UTC, strings are parsed (ISO 8601)."""
    index = table.column_names.index(name)
    column = table.column(index)
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        try:
            parsed = pd.to_datetime(column.to_pandas(), utc=True, format="ISO8601")
        except (ValueError, TypeError) as exc:
            # pandas' message goes on for lines about its own options; keep its first line, give our fix.
            raise RequestError(
                f"entity frame column '{name}' has values that are not timestamps ({str(exc).splitlines()[0]}): "
                "write ISO 8601 times such as 2024-01-31T00:00:00Z"
            ) from exc
        column = pa.chunked_array([pa.array(parsed, type=pa.timestamp("us", tz="UTC"))])
    elif not (pa.types.is_timestamp(column.type) or pa.types.is_date(column.type)):
        raise RequestError(f"entity frame column '{name}' is {column.type}, not a timestamp")
    if column.null_count:
        raise RequestError(f"entity frame column '{name}' has {column.null_count} missing timestamps")
    utc = column.cast(pa.timestamp("us", tz="UTC"), safe=False)
    return table.set_column(index, name, utc)


def _resolved(offline_store: OfflineStore, sel: ViewSelection) -> ViewSelection:
    """The selection over a view whose join-key dtypes are known (read from the source if not declared)."""
    if sel.view.is_resolved and sel.features:
        return sel
    view = sel.view.resolve(offline_store.source_schema(sel.view.batch_source))
    features = sel.features or tuple(view.feature_names)
    return dataclasses.replace(sel, view=view, features=features)


def _check_keys(table: pa.Table, selections: Sequence[ViewSelection]) -> pa.Table:
    """Check every join key column exists and has a type comparable with the view's; decode dictionaries."""
    for sel in selections:
        for field, column in zip(sel.view.entity_columns, sel.entity_columns(), strict=True):
            if column not in table.column_names:
                raise EntityKeyError(
                    f"the entity frame has no column '{column}', a join key of '{sel.view.name}' "
                    f"(columns: {table.column_names})"
                )
            index = table.column_names.index(column)
            arrow_type = table.schema.field(index).type
            if pa.types.is_dictionary(arrow_type):
                table = table.set_column(index, column, table.column(index).cast(arrow_type.value_type))
                arrow_type = arrow_type.value_type
            if not _key_compatible(field.dtype, arrow_type):
                raise EntityKeyError(
                    f"entity frame column '{column}' is {arrow_type} but '{sel.view.name}' joins on "
                    f"'{field.name}' of type {field.dtype}"
                )
    return table


_STRING_CHECKS = (pa.types.is_string, pa.types.is_large_string, pa.types.is_string_view)


def _key_compatible(dtype: DType, arrow_type: pa.DataType) -> bool:
    if dtype.value_type in (ValueType.INT32, ValueType.INT64):
        return bool(pa.types.is_integer(arrow_type))
    if dtype.value_type == ValueType.STRING:
        return any(check(arrow_type) for check in _STRING_CHECKS)
    if dtype.value_type == ValueType.BYTES:
        return bool(pa.types.is_binary(arrow_type) or pa.types.is_large_binary(arrow_type))
    return bool(dtype.arrow.equals(arrow_type))


def write_result(job: RetrievalJob, path: str | Path) -> None:
    """Write a job's result to ``path``: Parquet (``.parquet``/``.pq``) or CSV (``.csv``), by extension."""
    target = Path(path)
    suffix = target.suffix.lower()
    if suffix in (".parquet", ".pq"):
        job.to_parquet(target)
    elif suffix == ".csv":
        to_csv = getattr(job, "to_csv", None)
        if callable(to_csv):
            to_csv(target)
        else:
            import pyarrow.csv as pacsv

            pacsv.write_csv(job.to_arrow(), target)
    else:
        raise RequestError(f"cannot write {target.name}: use a .parquet or .csv file name")
