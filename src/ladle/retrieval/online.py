"""``get_online_features``: resolve once, read every view in one store call, apply ttl.

The hot path does as little as possible per call: references are resolved and validated once per
(registry version, request shape) and kept in an LRU cache as an
:class:`~ladle.retrieval.plan.OnlinePlan`; entity values are checked and coerced with plain list
operations (no pandas or Arrow for small requests); the store returns Python lists, which become the
column-major :class:`OnlineResponse` directly.

Statuses per value: ``PRESENT``; ``NOT_FOUND`` (no row for the entity: value ``None``, timestamp 0);
``NULL_VALUE`` (a stored null); ``OUTSIDE_MAX_AGE`` (the row's event time is older than
``now - view.ttl``: value ``None``, its event timestamp kept). ``ttl == 0`` means no limit.
"""

from __future__ import annotations

import itertools
import operator
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np
import pandas as pd

from ladle.definitions import FeatureService
from ladle.definitions.refs import ViewSelection, resolve
from ladle.errors import EntityKeyError, InvalidFeatureReferenceError
from ladle.online.base import OnlineStore, ReadRequest, ViewRows
from ladle.online.keys import DUMMY_JOIN_KEY, key_types_for
from ladle.registry.base import RegistrySnapshot
from ladle.retrieval.on_demand import compile_on_demand, names_on_demand
from ladle.retrieval.plan import Features, OnlinePlan, PlanCache, ViewRead
from ladle.retrieval.response import OnlineResponse
from ladle.retrieval.variants import read_split, split_of
from ladle.types import DType, FieldStatus, ValueType

EntityRows = Sequence[Mapping[str, Any]] | Mapping[str, Any] | pd.DataFrame

_PRESENT = int(FieldStatus.PRESENT)
_NULL = int(FieldStatus.NULL_VALUE)
_NOT_FOUND = int(FieldStatus.NOT_FOUND)
_OUTSIDE = int(FieldStatus.OUTSIDE_MAX_AGE)
_INT32 = (-(2**31), 2**31 - 1)
_NONES = itertools.repeat(None)  # with map(operator.contains, columns, _NONES): "None in column", per column


class SnapshotSource(Protocol):
    """Anything with a registry snapshot (the SQL registry, or a test double)."""

    def snapshot(self, *, allow_cache: bool = True) -> RegistrySnapshot:
        """The current definitions."""
        ...


class OnlineRetriever:
    """Serves ``get_online_features`` from a registry and an online store.

    A read is planned once and then executed: :meth:`plan` resolves a request shape into an
    :class:`~ladle.retrieval.plan.OnlinePlan` (cached per registry version), :meth:`read` runs it
    for entity values. :meth:`get_online_features` does both. ``clock`` returns the current time in
    seconds since the epoch (for ttl); tests inject one.
    """

    def __init__(
        self,
        registry: SnapshotSource,
        online_store: OnlineStore,
        clock: Callable[[], float] = time.time,
        cache_size: int = 1024,
    ) -> None:
        self.registry = registry
        self.online_store = online_store
        self.clock = clock
        self.plans = PlanCache(compile_plan, cache_size)

    def get_online_features(
        self, features: Features, entity_rows: EntityRows, full_feature_names: bool = False
    ) -> OnlineResponse:
        """Latest values of ``features`` for each entity row (see the module docstring)."""
        snapshot = self.registry.snapshot()
        names, column, n = _entity_input(entity_rows)
        if type(features) is not list:  # only a service can be a split: a list of references skips the check
            split = split_of(snapshot, features)
            if split is not None:
                entities = {name: list(column(name)) for name in names}
                return read_split(self, snapshot, split, entities, n, full_feature_names)[0]
        return self._run(self.plans.get(snapshot, features, full_feature_names, names), column, n)

    def plan(
        self, snapshot: RegistrySnapshot, features: Features, full_feature_names: bool, entity_names: tuple[str, ...]
    ) -> OnlinePlan:
        """The plan of a request for ``features`` with entity columns ``entity_names`` (cached)."""
        return self.plans.get(snapshot, features, full_feature_names, entity_names)

    def read(self, plan: OnlinePlan, entities: Mapping[str, Sequence[Any]], rows: int) -> OnlineResponse:
        """Run ``plan`` for ``rows`` entity rows: ``entities`` maps (at least) each of the plan's
        key columns to a list of ``rows`` values. One store call; ttl applied."""
        return self._run(plan, entities.__getitem__, rows)

    def _run(self, plan: OnlinePlan, column: Callable[[str], Sequence[Any]], rows: int) -> OnlineResponse:
        key_types = plan.key_types
        keys = {c: _coerce(c, column(c), key_types[c]) for c in plan.key_columns}
        if plan.entityless:
            keys[DUMMY_JOIN_KEY] = [""] * rows
        if not rows or not plan.reads:
            results = [_empty(r) for r in plan.reads]
        elif len(plan.reads) == 1:  # the usual small read: skip the sharing below
            only = plan.reads[0]
            mapping = {jk: keys[c] for jk, c in only.key_columns}
            results = self.online_store.read(plan.project, [ReadRequest(only.view, only.features, mapping)])
        else:
            # Views joined the same way (all of them, usually) share one key mapping.
            mappings = {pairs: {jk: keys[c] for jk, c in pairs} for pairs in plan.key_mappings}
            requests = [ReadRequest(r.view, r.features, mappings[r.key_columns]) for r in plan.reads]
            results = self.online_store.read(plan.project, requests)
        now_us = int(self.clock() * 1_000_000) if plan.uses_ttl else 0
        response = _respond(plan, keys, results, rows, now_us)
        if plan.on_demand is not None:
            return plan.on_demand.apply(response, column, rows)  # type: ignore[no-any-return]
        return response


def compile_plan(snapshot: RegistrySnapshot, features: Features, full: bool, names: tuple[str, ...]) -> OnlinePlan:
    """Resolve ``features`` against ``snapshot`` for entity columns ``names`` (typed errors if invalid)."""
    if not isinstance(features, FeatureService | str | list | tuple):
        raise InvalidFeatureReferenceError(
            f"features must be a list of 'view:feature' references or a feature service, got {type(features).__name__}"
        )
    if snapshot.on_demand_feature_views and names_on_demand(snapshot, features):
        return compile_on_demand(snapshot, features, full, names, compile_plan)
    selections = resolve(snapshot, features, full)
    key_types: dict[str, ValueType | None] = {}
    key_dtypes: dict[str, DType] = {}
    pending = [_view_read(sel, names, full, key_types, key_dtypes) for sel in selections]
    key_columns = tuple(n for n in names if n in key_types)
    start = len(key_columns)
    reads = []
    dtypes: list[DType | None] = [key_dtypes.get(c) for c in key_columns]
    for read in pending:
        stop = start + len(read.outputs)
        reads.append(ViewRead(read.view, read.features, read.outputs, read.key_columns, read.ttl_us, start, stop))
        dtypes.extend(read.view.feature(f).dtype for f in read.features)
        start = stop
    outputs = tuple(o for r in reads for o in r.outputs)
    return OnlinePlan(
        project=snapshot.project,
        version=snapshot.version,
        key_columns=key_columns,
        key_types=key_types,
        reads=tuple(reads),
        feature_names=key_columns + outputs,
        dtypes=tuple(dtypes),
        uses_ttl=any(r.ttl_us for r in reads),
        entityless=any(not r.view.entities for r in reads),
    )


def _view_read(
    sel: ViewSelection,
    names: tuple[str, ...],
    full: bool,
    key_types: dict[str, ValueType | None],
    key_dtypes: dict[str, DType],
) -> ViewRead:
    view = sel.view
    declared = key_types_for(view)
    pairs = []
    columns = sel.entity_columns()
    for column, fld in zip(columns, view.entity_columns, strict=False):
        key_dtypes.setdefault(column, fld.dtype)
    for join_key, column in zip(view.join_keys, columns, strict=True):
        if column not in names:
            raise EntityKeyError(
                f"entity rows lack join key '{column}' needed by feature view '{view.name}'; given: {list(names)}"
            )
        vt = declared[join_key]
        seen = key_types.get(column)
        if seen is not None and vt is not None and seen != vt:
            raise EntityKeyError(f"join key '{column}' is {seen.name} in one view and {vt.name} in '{view.name}'")
        key_types[column] = seen if seen is not None else vt
        pairs.append((join_key, column))
    if not view.entities:
        pairs.append((DUMMY_JOIN_KEY, DUMMY_JOIN_KEY))
    ttl_us = int(view.ttl.total_seconds() * 1_000_000)
    outputs = tuple(sel.output_names(full))
    return ViewRead(view, sel.features, outputs, tuple(pairs), ttl_us, 0, 0)


def entities_from_text(
    snapshot: RegistrySnapshot, features: Features, pairs: Sequence[tuple[str, str]]
) -> dict[str, list[Any]]:
    """Entity columns from ``key=value`` text (the CLI), typed by the join keys' dtypes.

    Repeating a key gives several rows; every key must be given the same number of times.
    """
    columns: dict[str, list[str]] = {}
    for key, value in pairs:
        columns.setdefault(key, []).append(value)
    plan = compile_plan(snapshot, features, True, tuple(columns))
    requested: dict[str, DType] = plan.on_demand.request_types if plan.on_demand is not None else {}
    return {
        k: [_request_from_text(k, v, requested[k]) if k in requested else _from_text(k, v, plan.key_types.get(k))
            for v in vals]
        for k, vals in columns.items()
    }  # fmt: skip


def _request_from_text(name: str, text: str, dtype: DType) -> Any:
    """A request field's text as its declared type (numbers, booleans; other types stay text)."""
    vt = dtype.value_type
    try:
        if vt in (ValueType.INT32, ValueType.INT64):
            return int(text)
        if vt in (ValueType.DOUBLE, ValueType.FLOAT):
            return float(text)
    except ValueError:
        raise EntityKeyError(f"request field '{name}' is {vt.name} but {text!r} is not a number") from None
    if vt == ValueType.BOOL:
        flag = {"true": True, "false": False, "1": True, "0": False}.get(text.strip().lower())
        if flag is None:
            raise EntityKeyError(f"request field '{name}' is BOOL but {text!r} is not true or false")
        return flag
    return text


# -- entity input ---------------------------------------------------------------------------------


def _entity_input(rows: EntityRows) -> tuple[tuple[str, ...], Callable[[str], Sequence[Any]], int]:
    """Column names in request order, a column getter, and the row count, for any accepted form."""
    if type(rows) is list:  # the usual form first: isinstance against ABCs is slow
        return _from_records(rows)
    if isinstance(rows, pd.DataFrame):
        frame = rows
        return tuple(str(c) for c in frame.columns), lambda c: frame[c].tolist(), len(frame)
    if isinstance(rows, Mapping):
        return _from_columns(rows)
    if isinstance(rows, list | tuple):
        return _from_records(rows)
    raise EntityKeyError(
        f"entity_rows must be a list of dicts, a dict of columns or a pandas DataFrame, got {type(rows).__name__}"
    )


def _from_columns(columns: Mapping[str, Any]) -> tuple[tuple[str, ...], Callable[[str], Sequence[Any]], int]:
    lengths = set()
    for name, col in columns.items():
        if isinstance(col, str | bytes) or not hasattr(col, "__len__"):
            raise EntityKeyError(f"entity column '{name}' must be a list of values, got {type(col).__name__}")
        lengths.add(len(col))
    if len(lengths) > 1:
        sizes = {name: len(col) for name, col in columns.items()}
        raise EntityKeyError(f"entity columns have different lengths: {sizes}")

    def column(name: str) -> Sequence[Any]:
        col = columns[name]
        return col.tolist() if isinstance(col, np.ndarray | pd.Series) else col

    return tuple(columns), column, lengths.pop() if lengths else 0


def _from_records(records: Sequence[Mapping[str, Any]]) -> tuple[tuple[str, ...], Callable[[str], list[Any]], int]:
    if not records:
        return (), lambda name: [], 0
    first = records[0]
    if not isinstance(first, Mapping):
        raise EntityKeyError(f"entity rows must be dicts of join key to value, got {type(first).__name__}")

    def column(name: str) -> list[Any]:
        try:
            return [r[name] for r in records]
        except KeyError:
            row = next(i for i, r in enumerate(records) if name not in r)
            raise EntityKeyError(f"entity row {row} lacks join key '{name}'") from None
        except TypeError:
            raise EntityKeyError("every entity row must be a dict of join key to value") from None

    return tuple(first), column, len(records)


def _coerce(name: str, values: Sequence[Any], vt: ValueType | None) -> list[Any]:
    """The column as the join key's Python type, or :class:`EntityKeyError`."""
    if vt is None:
        vt = _infer(name, values)
    if vt == ValueType.STRING:
        if len(values) == 1 and type(values[0]) is str:
            return [values[0]]
        if all(type(v) is str for v in values):
            return list(values)
        return [_checked(name, v, str, vt) for v in values]
    if vt in (ValueType.INT64, ValueType.INT32):
        out = values if all(type(v) is int for v in values) else [_checked(name, v, int, vt) for v in values]
        if vt == ValueType.INT32 and any(not _INT32[0] <= v <= _INT32[1] for v in out):
            raise EntityKeyError(f"join key '{name}' is INT32 but a value is out of range")
        return list(out)
    return [_checked(name, v, bytes, vt) for v in values]


def _checked(name: str, value: Any, kind: type, vt: ValueType) -> Any:
    if kind is int and isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_):
        return int(value)
    if kind is str and isinstance(value, str):
        return str(value)
    if kind is bytes and isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    raise EntityKeyError(f"join key '{name}' is {vt.name} but got {value!r} ({type(value).__name__})")


def _infer(name: str, values: Sequence[Any]) -> ValueType:
    if not len(values):
        return ValueType.STRING
    first = values[0]
    if isinstance(first, str):
        return ValueType.STRING
    if isinstance(first, int | np.integer) and not isinstance(first, bool | np.bool_):
        return ValueType.INT64
    if isinstance(first, bytes | bytearray | memoryview):
        return ValueType.BYTES
    raise EntityKeyError(f"join key '{name}' values must be str, int or bytes, got {first!r}")


def _from_text(name: str, text: str, vt: ValueType | None) -> Any:
    if vt == ValueType.STRING:
        return text
    if vt == ValueType.BYTES:
        return text.encode()
    try:
        return int(text)
    except ValueError:
        if vt is None:
            return text
        raise EntityKeyError(f"join key '{name}' is {vt.name} but {text!r} is not an integer") from None


# -- response -------------------------------------------------------------------------------------


def _empty(read: ViewRead) -> ViewRows:
    return ViewRows([], {f: [] for f in read.features})


def _respond(
    plan: OnlinePlan, keys: dict[str, list[Any]], results: list[ViewRows], n: int, now_us: int
) -> OnlineResponse:
    # Columns of one view share its timestamp list, and fully present columns one status list:
    # encoders rely on that to convert each distinct list once.
    present = [_PRESENT] * n
    zeros = [0] * n
    records: list[tuple[ViewRead, Any]] | None = []
    values: list[list[Any]] = [keys[c] for c in plan.key_columns]
    statuses: list[list[int]] = [present] * len(values)
    stamps: list[list[int]] = [zeros] * len(values)
    for read, rows in zip(plan.reads, results, strict=True):
        ts = rows.event_ts
        width = len(read.features)
        cutoff = now_us - read.ttl_us if read.ttl_us else None
        if None not in ts and (cutoff is None or not ts or min(ts) >= cutoff):  # type: ignore[type-var,operator]
            columns = list(map(rows.values.__getitem__, read.features))
            values += columns
            if any(map(operator.contains, columns, _NONES)):
                statuses += [[_NULL if v is None else _PRESENT for v in c] if None in c else present for c in columns]
            else:
                statuses += [present] * width
            stamps += [ts] * width  # type: ignore[list-item]  # no None in it
            if records is not None:  # every row present: the store's records hold the whole answer
                if rows.raw is None:
                    records = None
                else:
                    records.append((read, rows.raw))
            continue
        records = None
        row_status = [
            _NOT_FOUND if t is None else _OUTSIDE if cutoff is not None and t < cutoff else _PRESENT for t in ts
        ]
        view_ts = [0 if t is None else t for t in ts]
        for f in read.features:
            col = [v if s == _PRESENT else None for v, s in zip(rows.values[f], row_status, strict=True)]
            values.append(col)
            statuses.append([_NULL if s == _PRESENT and v is None else s for v, s in zip(col, row_status, strict=True)])
        stamps += [view_ts] * width
    response = OnlineResponse(list(plan.feature_names), values, statuses, stamps)
    if records:
        response.records = records
    return response
