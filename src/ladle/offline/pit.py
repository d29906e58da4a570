"""The point-in-time join as one DuckDB query (pure SQL building; nothing is executed here).

For each view, in four steps (CTEs):

1. ``__ids<n>``: the distinct join key values of the entity frame, numbered (INTEGER). Joining the
   source to them drops the rows of entities nobody asked for, and the ASOF join then partitions
   on a small integer instead of strings (measured: about a quarter less CPU).
2. ``__src<n>``: the source reduced to (entity id, event time, ordering key, row id), within
   ``[min(row_ts) - ttl, max(row_ts)]``; the bounds are tested on the raw Parquet column, so
   row-group statistics skip old data. They are only an optimization, widened by a millisecond.
3. ``__hit<n>``: ``ASOF JOIN`` of the entity rows with ``__src<n>``: for each row, the source row
   with the same entity id and the greatest ordering key not above the row's. The ordering key is
   the event time in microseconds (``BIGINT``) or, when the source has a created-timestamp column,
   ``event_us * 2^64 + (created_us + 2^63)`` (``HUGEINT``): among rows with the same event time,
   the one created last wins and a NULL created time loses. The entity side uses
   ``row_us * 2^64 + (2^64 - 1)``, so every row with ``event_ts <= row_ts`` qualifies. The ttl
   is tested on the winner (``event_ts >= row_ts - ttl``): if the newest qualifying row is too
   old, every older one is too.
4. ``__val<n>``: the feature values of the winning rows, fetched by row id (file index, row in
   file) from a second scan of the files. Keeping the features out of the ASOF join makes its
   sorted data narrower (36 bytes a row instead of 92 with eight features), so it needs less
   memory, at about the same CPU as carrying the features through it (docs/offline.md).

The result is the entity frame's columns in their order, then each view's features, in the entity
frame's row order (``ORDER BY __ladle_row``, a row number added to the frame); an entity row
without a match gets NULLs (left join).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ladle.definitions import FeatureView
from ladle.offline.hashing import HashRange
from ladle.offline.sources import SourceScan, quote

ROW = "__ladle_row"
TIME = "__ladle_t"
HUGE = "__ladle_h"
ENTITY = "__ladle_entity"

_SHIFT = 18_446_744_073_709_551_616  # 2^64
_OFFSET = 9_223_372_036_854_775_808  # 2^63
_SLACK_US = 1_000
_MIN_US = -62_135_596_800_000_000  # 0001-01-01
_MAX_US = 253_402_300_799_000_000  # 9999-12-31 23:59:59


@dataclass(frozen=True)
class ViewJoin:
    """One view's part of the query."""

    scan: SourceScan
    view: FeatureView  # resolved against the scan
    features: tuple[str, ...]
    outputs: tuple[str, ...]
    entity_keys: tuple[str, ...]  # entity-frame column of each join key, in view.join_keys order
    key_types: tuple[str, ...]  # DuckDB type both sides of each key are compared as
    entity_casts: tuple[str | None, ...]  # DuckDB type each entity key column is cast to, if any
    ttl_us: int  # 0: no limit
    #: an extra condition on the source rows (an entity-hash range of a partitioned retrieval); "": none
    where: str = ""
    #: the one entity-hash bucket (``lo + 1 == hi``) every entity row of the frame is in, when the frame is a
    #: part cut on this join's keys (a Ray task's; ``where`` then holds its condition): a partitioned job
    #: cuts inside it (``partitioned.sub_parts``)
    bucket: HashRange | None = None

    @property
    def tie_break(self) -> bool:
        """Whether rows are ordered by (event, created) rather than event time alone."""
        return bool(self.view.batch_source.created_timestamp_column)


def _bounds(join: ViewJoin, t_min: int, t_max: int, extra: bool = True) -> str:
    scan, ts = join.scan, join.view.batch_source.timestamp_field
    where = [scan.bound(ts, "<=", min(t_max + _SLACK_US, _MAX_US))]
    low = t_min - join.ttl_us - _SLACK_US
    if join.ttl_us and low > _MIN_US:
        where.append(scan.bound(ts, ">=", low))
    if join.where and extra:
        where.append(f"({join.where})")
    return " AND ".join(where)


def _source_keys(join: ViewJoin, t_min: int, t_max: int) -> str:
    """Join keys, event time, ordering key and row id of the source rows that can match."""
    scan, src = join.scan, join.view.batch_source
    keys = zip(join.view.join_keys, join.key_types, strict=True)
    cols = [f"{scan.cast_sql(k, t)} AS __k{i}" for i, (k, t) in enumerate(keys)]
    event = scan.epoch_us(src.timestamp_field)
    cols.append(f"{event} AS __t")
    if join.tie_break:
        created = f"coalesce({scan.epoch_us(src.created_timestamp_column)}, -{_OFFSET})"
        cols.append(f"{event}::HUGEINT * {_SHIFT} + ({created}::HUGEINT + {_OFFSET}) AS __a")
    else:
        cols.append(f"{event} AS __a")
    cols.append(f"{scan.row_id} AS __rid")
    return f"SELECT {', '.join(cols)} FROM {scan.relation} WHERE {_bounds(join, t_min, t_max)}"


def _source_values(join: ViewJoin, t_min: int, t_max: int) -> str:
    """Row id and the selected features (cast to the view's dtypes) of the source rows."""
    scan, view = join.scan, join.view
    dtypes = {f.name: f.dtype for f in view.features}
    cols = [f"{scan.row_id} AS __rid", *(f"{scan.cast(f, dtypes[f])} AS __f{i}" for i, f in enumerate(join.features))]
    # no ``join.where`` here: values are fetched by the winners' row ids, which satisfy it already (testing it
    # again would read and hash the key columns in this scan too)
    return f"SELECT {', '.join(cols)} FROM {scan.relation} WHERE {_bounds(join, t_min, t_max, extra=False)}"


def _entity_key(join: ViewJoin, i: int) -> str:
    ref = f"e.{quote(join.entity_keys[i])}"
    cast = join.entity_casts[i]
    return f"CAST({ref} AS {cast})" if cast else ref


def _key_match(left: str, right: str, width: int) -> str:
    # A view without entities matches every row: one id for everything.
    return " AND ".join(f"{left}.__k{i} = {right}.__k{i}" for i in range(width)) or "TRUE"


def _ids_cte(join: ViewJoin, n: int, entity: str) -> str:
    width = len(join.entity_keys)
    if not width:
        return f"__ids{n} AS (SELECT 1::INTEGER AS __id)"
    keys = ", ".join(f"{_entity_key(join, i)} AS __k{i}" for i in range(width))
    # MATERIALIZED: both references must see the same numbering (row_number() OVER () is arbitrary,
    # and without insertion order two evaluations could number the keys differently)
    return (
        f"__ids{n} AS MATERIALIZED (SELECT *, (row_number() OVER ())::INTEGER AS __id\n"
        f"    FROM (SELECT DISTINCT {keys} FROM {entity} AS e))"
    )


def _hit_ctes(join: ViewJoin, n: int, t_min: int, t_max: int) -> list[str]:
    """``__src<n>`` and ``__hit<n>``: the source's candidate rows and each entity row's winner."""
    width = len(join.entity_keys)
    order = HUGE if join.tie_break else TIME
    ttl = f"\n    WHERE v.__t >= e.{TIME} - {join.ttl_us}" if join.ttl_us else ""
    return [
        f"__src{n} AS (SELECT i.__id, s.__t, s.__a, s.__rid\n"
        f"    FROM ({_source_keys(join, t_min, t_max)}) AS s\n"
        f"    JOIN __ids{n} AS i ON {_key_match('s', 'i', width)})",
        f"__hit{n} AS (SELECT e.{ROW}, v.__rid\n"
        f"    FROM __rows AS e ASOF JOIN __src{n} AS v ON e.__id{n} = v.__id AND e.{order} >= v.__a{ttl})",
    ]


def _val_cte(join: ViewJoin, n: int, t_min: int, t_max: int, hits: str) -> str:
    """``__val<n>``: the features of the winning rows ``hits`` (row number, row id), by row id."""
    features = ", ".join(f"s.__f{i}" for i in range(len(join.features)))
    return (
        f"__val{n} AS (SELECT h.{ROW}, {features}\n"
        f"    FROM {hits} AS h JOIN ({_source_values(join, t_min, t_max)}) AS s ON h.__rid = s.__rid)"
    )


def _view_ctes(join: ViewJoin, n: int, t_min: int, t_max: int, entity: str) -> list[str]:
    return [_ids_cte(join, n, entity), *_hit_ctes(join, n, t_min, t_max), _val_cte(join, n, t_min, t_max, f"__hit{n}")]


def _rows_cte(joins: Sequence[ViewJoin], entity: str) -> str:
    """The entity rows with their time, ordering key and, per view, entity id."""
    cols = [f"e.{ROW}", f"e.{TIME}"]
    if any(j.tie_break for j in joins):
        cols.append(f"e.{TIME}::HUGEINT * {_SHIFT} + {_SHIFT - 1} AS {HUGE}")
    lookups = []
    for n, join in enumerate(joins):
        cols.append(f"__ids{n}.__id AS __id{n}")
        match = (
            " AND ".join(f"{_entity_key(join, i)} = __ids{n}.__k{i}" for i in range(len(join.entity_keys))) or "TRUE"
        )
        lookups.append(f"\n    LEFT JOIN __ids{n} ON {match}")
    return f"__rows AS (SELECT {', '.join(cols)}\n    FROM {entity} AS e{''.join(lookups)})"


def build_sql(columns: Sequence[str], joins: Sequence[ViewJoin], t_min: int, t_max: int) -> str:
    """The whole point-in-time query over the registered entity relation ``__ladle_entity``.

    ``columns`` are the entity frame's columns (output first, in this order); the relation also
    has ``__ladle_row`` (row number) and ``__ladle_t`` (row time, UTC microseconds).
    ``t_min``/``t_max`` are the smallest and largest row times.
    """
    entity = quote(ENTITY)
    per_view = [_view_ctes(join, n, t_min, t_max, entity) for n, join in enumerate(joins)]
    ctes = [v[0] for v in per_view] + [_rows_cte(joins, entity)] + [c for v in per_view for c in v[1:]]
    return _select(ctes, columns, joins, entity)


def hits_sql(join: ViewJoin, t_min: int, t_max: int, entity: str) -> str:
    """The first half of the query for one view, over the entity relation ``entity``: each entity row's
    winning source row, as (``__ladle_row``, ``__rid``); rows without a winner are left out."""
    ctes = [_ids_cte(join, 0, entity), _rows_cte([join], entity), *_hit_ctes(join, 0, t_min, t_max)]
    return "WITH " + ",\n".join(ctes) + f"\nSELECT {ROW}, __rid FROM __hit0"


def values_sql(
    columns: Sequence[str], joins: Sequence[ViewJoin], hits: Sequence[str], t_min: int, t_max: int, entity: str
) -> str:
    """The second half: the entity rows of ``entity`` with the features of each view's winners, read
    from the relations ``hits`` (one per view, as :func:`hits_sql` returns them), in row order."""
    ctes = [_val_cte(join, n, t_min, t_max, h) for n, (join, h) in enumerate(zip(joins, hits, strict=True))]
    return _select(ctes, columns, joins, entity)


def _select(ctes: Sequence[str], columns: Sequence[str], joins: Sequence[ViewJoin], entity: str) -> str:
    select = [f"e.{quote(c)}" for c in columns]
    parts = [f"FROM {entity} AS e"]
    for n, join in enumerate(joins):
        select += [f"__val{n}.__f{i} AS {quote(name)}" for i, name in enumerate(join.outputs)]
        parts.append(f"LEFT JOIN __val{n} ON e.{ROW} = __val{n}.{ROW}")
    return (
        "WITH "
        + ",\n".join(ctes)
        + "\nSELECT "
        + ",\n  ".join(select)
        + "\n"
        + "\n".join(parts)
        + f"\nORDER BY e.{ROW}"
    )
