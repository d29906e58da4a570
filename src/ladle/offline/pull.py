"""SQL of ``pull_latest`` (what materialization reads) and ``pull_all``.

Both return the view's join keys and features under the view's names, then ``event_timestamp``
and ``created_timestamp`` (TIMESTAMPTZ, UTC; the latter NULL when the source has no created
column), for rows with ``start <= event_ts <= end``.

``pull_latest`` keeps one row per join key value (rows with a NULL key are skipped): the greatest
event time, then the greatest created time (NULL created times lose). It is a hash aggregate
with ``arg_max`` over a packed ordering key (about half the CPU of a ``row_number()`` window), so
memory grows with the number of entities in the window, not with its rows.
"""

from __future__ import annotations

from ladle.definitions import FeatureView
from ladle.offline.sources import SourceScan, quote
from ladle.types import CREATED_TIMESTAMP, EVENT_TIMESTAMP

_SHIFT = 18_446_744_073_709_551_616  # 2^64
_OFFSET = 9_223_372_036_854_775_808  # 2^63


def _columns(scan: SourceScan, view: FeatureView) -> list[str]:
    src = view.batch_source
    cols = [f"{scan.cast(f.name, f.dtype)} AS {quote(f.name)}" for f in [*view.entity_columns, *view.features]]
    cols.append(f"{scan.utc(src.timestamp_field)} AS {EVENT_TIMESTAMP}")
    created = scan.utc(src.created_timestamp_column) if src.created_timestamp_column else "NULL::TIMESTAMPTZ"
    cols.append(f"{created} AS {CREATED_TIMESTAMP}")
    return cols


def _window(scan: SourceScan, view: FeatureView, start_us: int, end_us: int) -> str:
    ts = view.batch_source.timestamp_field
    # The raw-column bounds let Parquet statistics skip row groups; the epoch test is exact.
    return " AND ".join(
        [
            scan.bound(ts, ">=", start_us - 1_000),
            scan.bound(ts, "<=", end_us + 1_000),
            f"{scan.epoch_us(ts)} BETWEEN {start_us} AND {end_us}",
        ]
    )


def all_sql(scan: SourceScan, view: FeatureView, start_us: int, end_us: int) -> str:
    """Every row of the view in ``[start, end]``."""
    where = _window(scan, view, start_us, end_us)
    return f"SELECT {', '.join(_columns(scan, view))}\nFROM {scan.relation}\nWHERE {where}"


def latest_sql(scan: SourceScan, view: FeatureView, start_us: int, end_us: int) -> str:
    """The newest row per join key value in ``[start, end]``."""
    src = view.batch_source
    keys = [quote(k) for k in view.join_keys]
    values = [quote(f.name) for f in view.features] + [EVENT_TIMESTAMP, CREATED_TIMESTAMP]
    order = f"epoch_us({EVENT_TIMESTAMP})"
    if src.created_timestamp_column:
        created = f"coalesce(epoch_us({CREATED_TIMESTAMP}), -{_OFFSET})"
        order = f"{order}::HUGEINT * {_SHIFT} + ({created}::HUGEINT + {_OFFSET})"
    packed = ", ".join(f"{v} := {v}" for v in values)
    rows = (
        f"SELECT {', '.join(_columns(scan, view))} FROM {scan.relation} WHERE {_window(scan, view, start_us, end_us)}"
    )
    latest = f"arg_max(struct_pack({packed}), {order}) AS __latest"
    if not keys:  # a view without entities has one "entity": the newest row overall, if any
        return f"SELECT __latest.* FROM (SELECT {latest} FROM ({rows})) WHERE __latest IS NOT NULL"
    key_list = ", ".join(keys)
    not_null = " AND ".join(f"{k} IS NOT NULL" for k in keys)
    return (
        f"SELECT {key_list}, __latest.*\nFROM (\n"
        f"  SELECT {key_list}, {latest}\n"
        f"  FROM ({rows})\n"
        f"  WHERE {not_null}\n"
        f"  GROUP BY {key_list}\n)"
    )
