"""Entity-hash partitions: the one hash of join keys every partitioned read and write agrees on.

An entity belongs to bucket ``hash(k1, k2, ...) % buckets`` where ``hash`` is DuckDB's ``hash`` of
the join key values cast to their *key type* (:func:`key_type`: integers as ``BIGINT`` whatever
their stored width, strings as ``VARCHAR``, bytes as ``BLOB``), in the view's join-key order.
Casting first matters: DuckDB hashes an ``INTEGER`` 5 and a ``BIGINT`` 5 differently, so a source
column and an entity frame column of different widths must be brought to one type.

Materialization chunks (``ladle.materialize.partitions``), partitioned historical retrieval and the
Ray engine all cut entities with :func:`bucket_sql` / :func:`range_condition`, so a range means the
same entities everywhere. DuckDB's ``hash`` has no per-process seed: the same DuckDB version gives
the same buckets in every process (tests/unit/test_materialize_chunks.py checks this across two
processes).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass

from ladle.definitions import FeatureView
from ladle.offline.sources import SourceScan, duck_type_of
from ladle.types import DType, ValueType

#: Entity-hash buckets a partition is a contiguous range of (by default).
BUCKETS = 4096


@dataclass(frozen=True)
class HashRange:
    """Entities whose ``hash(join keys) % buckets`` is in ``[lo, hi)``."""

    buckets: int
    lo: int
    hi: int

    @property
    def whole(self) -> bool:
        """Whether the range covers every entity."""
        return self.lo <= 0 and self.hi >= self.buckets


def key_type(dtype: DType) -> str:
    """The DuckDB type join keys of ``dtype`` are hashed (and compared) as: integers as BIGINT."""
    if dtype.value_type in (ValueType.INT32, ValueType.INT64):
        return "BIGINT"
    return duck_type_of(dtype)


def bucket_sql(keys: Sequence[str], buckets: int = BUCKETS) -> str:
    """SQL of the bucket of a row whose join keys are the SQL expressions ``keys``, each already of its
    :func:`key_type` (in the view's join-key order)."""
    if not keys:
        raise ValueError("an entity-hash bucket needs at least one join key")
    return f"(hash({', '.join(keys)}) % {buckets})"


def range_sql(keys: Sequence[str], part: HashRange) -> str:
    """SQL condition: the row's keys (expressions of their key types) fall in ``part``."""
    return f"{bucket_sql(keys, part.buckets)} BETWEEN {part.lo} AND {part.hi - 1}"


def scan_keys(scan: SourceScan, view: FeatureView) -> list[str]:
    """The view's join keys as read from ``scan``, each cast to its key type."""
    return [scan.cast_sql(f.name, key_type(f.dtype)) for f in view.entity_columns]


def range_condition(scan: SourceScan, view: FeatureView, part: HashRange) -> str:
    """SQL condition on the rows of ``scan``: the entity of the row (``view`` resolved against the
    scan) falls in ``part``."""
    return range_sql(scan_keys(scan, view), part)


@dataclass(frozen=True)
class EntityPart:
    """A frame known to hold only the entities of one hash range of some of its columns.

    ``columns`` are entity-frame columns and ``key_types`` the key types they were hashed as (in
    that order). A point-in-time join of such a frame filters the source of every view joined on
    exactly those columns (as those types) to the same range in its scan: rows of other entities
    could never match. The Ray engine's retrieval tasks set it (:data:`ENTITY_PART`).
    """

    columns: tuple[str, ...]
    key_types: tuple[str, ...]
    part: HashRange


#: The entity part of the retrieval running in this context (None: the frame is not cut). Set by
#: the Ray engine's tasks around their store's ``historical`` call; read when the joins are built.
ENTITY_PART: ContextVar[EntityPart | None] = ContextVar("ladle_entity_part", default=None)
