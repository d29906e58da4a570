"""Every statement of the MySQL-protocol store, written once and rendered per dialect with sqlglot.

Queries are written once in sqlglot's canonical dialect (double-quoted identifiers, ``TIMESTAMP(6)``),
parsed, and rendered with ``write="doris" | "starrocks" | "mysql"``. Only what the engines do not
share is chosen per dialect, on the parsed tree: the ASOF JOIN (Doris writes its time condition in
``MATCH_CONDITION (...)``, StarRocks in ``ON``), and the table properties of work tables. A source
given as a query (``DorisSource(query=...)``) is parsed in the store's own dialect and put in
place of a placeholder table.

Timestamps are compared as ``DATETIME(6)`` values in UTC (the session time zone is ``+00:00``);
instants are written as ``CAST('YYYY-MM-DD HH:MM:SS.ffffff' AS DATETIME(6))`` (never ``CAST(... AS
DATETIME)``, which MySQL truncates to the second).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import sqlglot
from sqlglot import exp

from ladle.errors import DataSourceError
from ladle.offline.doris.config import Dialect, SourceRelation

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: DATETIME's range on MySQL (Doris and StarRocks accept the same): instants are clamped to it.
MIN_US = (datetime(1000, 1, 1, tzinfo=UTC) - _EPOCH) // timedelta(microseconds=1)
MAX_US = (datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC) - _EPOCH) // timedelta(microseconds=1)
_QUERY = "__ladle_query"  # placeholder table of a query source
_ASOF = "__ladle_asof"  # alias marking the join that becomes an ASOF JOIN


def ident(name: str) -> str:
    """A canonical (double-quoted) identifier."""
    return '"' + name.replace('"', '""') + '"'


def iso(micros: int) -> str:
    """``YYYY-MM-DD HH:MM:SS.ffffff`` (UTC) of epoch microseconds, clamped to DATETIME's range."""
    return (_EPOCH + timedelta(microseconds=min(max(micros, MIN_US), MAX_US))).strftime("%Y-%m-%d %H:%M:%S.%f")


def instant(micros: int) -> str:
    """A canonical DATETIME(6) literal."""
    return f"CAST('{iso(micros)}' AS TIMESTAMP(6))"


@dataclass(frozen=True)
class Source:
    """A source as the queries see it: its relation and the view's names mapped to its columns."""

    relation: SourceRelation
    mapping: Mapping[str, str] = field(default_factory=dict)  # view name → source column
    timestamp: str = ""  # view names
    created: str = ""

    def col(self, view_name: str, alias: str = "s") -> str:
        """Canonical reference to the source column holding a view column."""
        return f"{alias}.{ident(self.mapping.get(view_name, view_name))}"

    def table(self, alias: str = "s") -> str:
        """The canonical table expression (a placeholder for a query source)."""
        if self.relation.query:
            return f"{ident(placeholder(self.relation.query))} AS {alias}"
        return f"{ident(self.relation.database)}.{ident(self.relation.table)} AS {alias}"


def placeholder(query: str) -> str:
    """The placeholder table name of a source query in canonical SQL."""
    return f"{_QUERY}_{hashlib.sha1(query.encode()).hexdigest()[:12]}"


def render(canonical: str, dialect: Dialect, source_queries: Sequence[str] = ()) -> str:
    """Parse a canonical statement and write it in ``dialect`` (query sources put in place)."""
    tree = sqlglot.parse_one(canonical)
    if source_queries:
        parsed: dict[str, exp.Expr] = {}
        for query in source_queries:
            try:
                parsed[placeholder(query)] = sqlglot.parse_one(query, read=dialect)
            except sqlglot.errors.ParseError as exc:
                first = str(exc).splitlines()[0]
                raise DataSourceError(f"cannot parse a source query as {dialect} SQL: {first}") from exc

        def swap(node: exp.Expr) -> exp.Expr:
            if isinstance(node, exp.Table) and node.name in parsed:
                alias = exp.TableAlias(this=exp.to_identifier(node.alias))
                return exp.Subquery(this=parsed[node.name].copy(), alias=alias)
            return node

        tree = tree.transform(swap)
    for join in tree.find_all(exp.Join):
        if join.alias_or_name == _ASOF:
            _make_asof(join, dialect)
    return tree.sql(dialect=dialect)


def _make_asof(join: exp.Join, dialect: Dialect) -> None:
    """``LEFT JOIN ... ON keys AND e.t >= s.t`` → the dialect's ASOF LEFT JOIN."""
    join.set("method", "ASOF")
    if dialect == "doris":  # Doris: ASOF LEFT JOIN r MATCH_CONDITION (l.t >= r.t) ON l.k = r.k
        on = join.args["on"]
        conjuncts = list(on.flatten()) if isinstance(on, exp.And) else [on]
        time = next(c for c in conjuncts if isinstance(c, exp.GTE))
        rest = [c for c in conjuncts if c is not time]
        join.set("match_condition", time.copy())
        join.set("on", exp.and_(*rest) if rest else exp.true())
    # StarRocks: ASOF LEFT JOIN r ON l.k = r.k AND l.t >= r.t (the inequality stays in ON)


# -- reads --------------------------------------------------------------------------------------


def _window(src: Source, start_us: int, end_us: int) -> str:
    ts = src.col(src.timestamp)
    return f"{ts} >= {instant(start_us)} AND {ts} <= {instant(end_us)}"


def _row_columns(src: Source, keys: Sequence[str], features: Sequence[str]) -> list[str]:
    cols = [f"{src.col(n)} AS {ident(n)}" for n in [*keys, *features]]
    cols.append(f"{src.col(src.timestamp)} AS {ident('event_timestamp')}")
    created = src.col(src.created) if src.created else "CAST(NULL AS TIMESTAMP(6))"
    cols.append(f"{created} AS {ident('created_timestamp')}")
    return cols


def pull_all_sql(src: Source, keys: Sequence[str], features: Sequence[str], start_us: int, end_us: int) -> str:
    """Every row with ``start <= event_ts <= end``: keys, features, event and created timestamps."""
    columns = ", ".join(_row_columns(src, keys, features))
    return f"SELECT {columns} FROM {src.table()} WHERE {_window(src, start_us, end_us)}"


def _tie_break(src: Source, alias: str = "s") -> str:
    """Newest created first; NULL created last (MySQL and Doris sort NULL lowest, so DESC puts it last)."""
    return f"{src.col(src.created, alias)} DESC NULLS LAST" if src.created else f"{src.col(src.timestamp, alias)}"


def pull_latest_sql(src: Source, keys: Sequence[str], features: Sequence[str], start_us: int, end_us: int) -> str:
    """The newest row per key in ``[start, end]`` (created breaks ties; NULL keys skipped).

    Group-wise maximum: ``MAX(event_ts)`` per key (an index on (keys, event_ts) answers it by a
    loose index scan on MySQL), joined back on (keys, event_ts); ``ROW_NUMBER()`` over the created
    time then keeps one row of each tie.
    """
    window = _window(src, start_us, end_us)
    not_null = "".join(f" AND {src.col(k)} IS NOT NULL" for k in keys)
    group = f" GROUP BY {', '.join(src.col(k) for k in keys)}" if keys else ""
    m_keys = "".join(f"{src.col(k)} AS {ident(f'__k{i}')}, " for i, k in enumerate(keys))
    on = " AND ".join(
        [*(f"{src.col(k)} = m.{ident(f'__k{i}')}" for i, k in enumerate(keys)), f"{src.col(src.timestamp)} = m.__ts"]
    )
    partition = f"PARTITION BY {', '.join(src.col(k) for k in keys)} " if keys else ""
    names = [ident(n) for n in [*keys, *features, "event_timestamp", "created_timestamp"]]
    return (
        f"WITH __m AS (SELECT {m_keys}MAX({src.col(src.timestamp)}) AS __ts "
        f"FROM {src.table()} WHERE {window}{not_null}{group}), "
        f"__r AS (SELECT {', '.join(_row_columns(src, keys, features))}, "
        f"ROW_NUMBER() OVER ({partition}ORDER BY {_tie_break(src)}) AS __rn "
        f"FROM {src.table()} JOIN __m AS m ON {on}) "
        f"SELECT {', '.join(names)} FROM __r WHERE __rn = 1"
    )


# -- the point-in-time join -----------------------------------------------------------------------

ROW = "__ladle_row"
TIME = "__ladle_t"


def key_slot(i: int) -> str:
    """Work-table column of the i-th uploaded entity key."""
    return f"__ladle_k{i}"


def low_slot(n: int) -> str:
    """Work-table column of view n's lower time bound (row time - ttl)."""
    return f"__ladle_lo{n}"


@dataclass(frozen=True)
class ViewJoin:
    """One selection of the point-in-time join."""

    source: Source
    keys: tuple[str, ...]  # the view's join keys (view names)
    slots: tuple[int, ...]  # the work-table key slot of each key
    features: tuple[str, ...]  # view names
    has_ttl: bool
    span: tuple[int, int]  # [min row time - ttl, max row time] in µs: the source rows that can match


def _hits_lookup(join: ViewJoin, n: int, work: str) -> str:
    """Per entity row, the newest source event time at or before it: an indexed ``ORDER BY ... LIMIT 1``."""
    src = join.source
    match = " AND ".join(
        [
            *(f"{src.col(k)} = e.{ident(key_slot(s))}" for k, s in zip(join.keys, join.slots, strict=True)),
            f"{src.col(src.timestamp)} <= e.{TIME}",
        ]
    )
    ts = src.col(src.timestamp)
    lookup = f"(SELECT {ts} FROM {src.table()} WHERE {match} ORDER BY {ts} DESC LIMIT 1)"
    return f"SELECT {_hit_columns(join, n)}, 1 AS __side, {lookup} AS __ts FROM {work} AS e"


def _hit_columns(join: ViewJoin, n: int) -> str:
    cols = [f"e.{ROW} AS __row", *(f"e.{ident(key_slot(s))} AS __k{i}" for i, s in enumerate(join.slots))]
    cols.append(f"e.{ident(low_slot(n))} AS __lo" if join.has_ttl else "CAST(NULL AS TIMESTAMP(6)) AS __lo")
    return ", ".join(cols)


def _hits_window(join: ViewJoin, n: int, work: str) -> str:
    """Entity rows and source rows of the same keys in one ordered stream; a running maximum of the
    source times gives each entity row the newest source time at or before it."""
    src = join.source
    slots = [ident(key_slot(s)) for s in join.slots]
    ids = f"(SELECT DISTINCT {', '.join(slots)} FROM {work}) AS d" if slots else ""
    on = " AND ".join(f"{src.col(k)} = d.{s}" for k, s in zip(join.keys, slots, strict=True))
    source_keys = "".join(f"{src.col(k)} AS __k{i}, " for i, k in enumerate(join.keys))
    from_source = f"{src.table()} JOIN {ids} ON {on}" if slots else src.table()
    span = (
        f"{src.col(src.timestamp)} >= {instant(join.span[0])} AND {src.col(src.timestamp)} <= {instant(join.span[1])}"
    )
    union = (
        f"SELECT CAST(NULL AS BIGINT) AS __row, {source_keys}CAST(NULL AS TIMESTAMP(6)) AS __lo, 0 AS __side, "
        f"{src.col(src.timestamp)} AS __t FROM {from_source} WHERE {span} "
        f"UNION ALL SELECT {_hit_columns(join, n)}, 1 AS __side, e.{TIME} AS __t FROM {work} AS e"
    )
    partition = f"PARTITION BY {', '.join(f'u.__k{i}' for i in range(len(slots)))} " if slots else ""
    running = (
        f"MAX(CASE WHEN u.__side = 0 THEN u.__t END) OVER ({partition}ORDER BY u.__t, u.__side "
        "ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)"
    )
    keys = "".join(f"u.__k{i}, " for i in range(len(slots)))
    return f"SELECT u.__row, {keys}u.__lo, u.__side, {running} AS __ts FROM ({union}) AS u"


def _hits_asof(join: ViewJoin, n: int, work: str) -> str:
    """The engine's ASOF LEFT JOIN picks the newest source time at or before each entity row."""
    src = join.source
    keys = "".join(f"{src.col(k)} AS __k{i}, " for i, k in enumerate(join.keys))
    span = (
        f"{src.col(src.timestamp)} >= {instant(join.span[0])} AND {src.col(src.timestamp)} <= {instant(join.span[1])}"
    )
    right = f"(SELECT {keys}{src.col(src.timestamp)} AS __t FROM {src.table()} WHERE {span}) AS {_ASOF}"
    on = [f"{_ASOF}.__k{i} = e.{ident(key_slot(s))}" for i, s in enumerate(join.slots)]
    on.append(f"e.{TIME} >= {_ASOF}.__t")
    return (
        f"SELECT {_hit_columns(join, n)}, 1 AS __side, {_ASOF}.__t AS __ts "
        f"FROM {work} AS e LEFT JOIN {right} ON {' AND '.join(on)}"
    )


_HITS = {"lookup": _hits_lookup, "window": _hits_window, "asof": _hits_asof}


def _values(join: ViewJoin, n: int) -> str:
    """The winning rows' features: the source joined back on (keys, event time); among rows with
    that time the newest created wins (ROW_NUMBER, ordered explicitly: Doris orders ties arbitrarily)."""
    src = join.source
    on = " AND ".join(
        [*(f"{src.col(k)} = h.__k{i}" for i, k in enumerate(join.keys)), f"{src.col(src.timestamp)} = h.__ts"]
    )
    ttl = " AND h.__ts >= h.__lo" if join.has_ttl else ""
    feats = "".join(f", {src.col(f)} AS __f{i}" for i, f in enumerate(join.features))
    return (
        f"SELECT h.__row{feats}, ROW_NUMBER() OVER (PARTITION BY h.__row ORDER BY {_tie_break(src)}) AS __rn "
        f"FROM __h{n} AS h JOIN {src.table()} ON {on} WHERE h.__side = 1{ttl}"
    )


def pit_sql(joins: Sequence[ViewJoin], work: str, strategy: str) -> str:
    """The whole point-in-time query over the work table ``work`` (canonical, qualified name).

    Returns ``__ladle_row`` then each view's features (``__v<n>__f<i>``) for every work-table row,
    in row order; a row without a match has NULLs.
    """
    ctes = []
    select = [f"e.{ROW}"]
    joined = []
    for n, join in enumerate(joins):
        ctes.append(f"__h{n} AS ({_HITS[strategy](join, n, work)})")
        ctes.append(f"__v{n} AS ({_values(join, n)})")
        select += [f"__v{n}.__f{i} AS __v{n}__f{i}" for i in range(len(join.features))]
        joined.append(f"LEFT JOIN __v{n} ON __v{n}.__row = e.{ROW} AND __v{n}.__rn = 1")
    return f"WITH {', '.join(ctes)} SELECT {', '.join(select)} FROM {work} AS e {' '.join(joined)} ORDER BY e.{ROW}"


def queries_of(joins: Sequence[ViewJoin]) -> list[str]:
    """The source queries a point-in-time query reads (for :func:`render`)."""
    return sorted({j.source.relation.query for j in joins if j.source.relation.query})


# -- writes and work tables -----------------------------------------------------------------------


def qualified(database: str, table: str) -> str:
    """A canonical ``"db"."table"``."""
    return f"{ident(database)}.{ident(table)}"


def create_table_sql(name: str, columns: Sequence[tuple[str, str]], dialect: Dialect, key: Sequence[str] = ()) -> str:
    """``CREATE TABLE`` with canonical column types, in ``dialect``.

    On MySQL ``key`` becomes the primary key; Doris and StarRocks get a duplicate-key table of
    one replica hashed on ``key`` (work tables are transient: one replica is enough).
    """
    defs = [f"{ident(c)} {t}" for c, t in columns]
    if key and dialect == "mysql":
        defs.append(f"PRIMARY KEY ({', '.join(ident(k) for k in key)})")
    sql = render(f"CREATE TABLE {name} ({', '.join(defs)})", dialect)
    if key and dialect != "mysql":
        keys = ", ".join(f"`{k}`" for k in key)
        sql += f' DUPLICATE KEY({keys}) DISTRIBUTED BY HASH({keys}) BUCKETS 1 PROPERTIES ("replication_num" = "1")'
    return sql


def drop_table_sql(name: str, dialect: Dialect) -> str:
    """``DROP TABLE IF EXISTS``."""
    return render(f"DROP TABLE IF EXISTS {name}", dialect)


def insert_sql(name: str, columns: Sequence[str], dialect: Dialect) -> str:
    """``INSERT INTO name (columns) VALUES (%s, ...)``: pymysql's ``executemany`` sends it as multi-row INSERTs."""
    head = render(f"INSERT INTO {name} ({', '.join(ident(c) for c in columns)}) SELECT 1", dialect)
    return head.removesuffix(" SELECT 1") + " VALUES (" + ", ".join(["%s"] * len(columns)) + ")"


def delete_window_sql(src: Source, dialect: Dialect, start_us: int, end_us: int) -> str:
    """Delete the rows with ``start <= event_ts < end`` of a table source."""
    ts = ident(src.mapping.get(src.timestamp, src.timestamp))
    name = qualified(src.relation.database, src.relation.table)
    return render(f"DELETE FROM {name} WHERE {ts} >= {instant(start_us)} AND {ts} < {instant(end_us)}", dialect)


def schema_sql(src: Source, dialect: Dialect) -> str:
    """A query returning no rows, whose result columns are the source's."""
    return render(f"SELECT * FROM {src.table()} LIMIT 0", dialect, [src.relation.query] if src.relation.query else ())
