"""``get_online_features``: resolve once, read every view in one store call, apply ttl.

The hot path does as little as possible per call: references are resolved and validated once per
(registry version, request shape) and kept in an LRU cache as a :class:`_Plan`; entity values are
checked and coerced with plain list operations (no pandas or Arrow for small requests); the store
returns Python lists, which become the column-major :class:`OnlineResponse` directly.

Statuses per value: ``PRESENT``; ``NOT_FOUND`` (no row for the entity: value ``None``, timestamp 0);
``NULL_VALUE`` (a stored null); ``OUTSIDE_MAX_AGE`` (the row's event time is older than
``now - view.ttl``: value ``None``, its event timestamp kept). ``ttl == 0`` means no limit.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd

from ladle.definitions import FeatureService, FeatureView
from ladle.definitions.refs import ViewSelection, resolve
from ladle.errors import EntityKeyError, InvalidFeatureReferenceError
from ladle.online.base import OnlineStore, ReadRequest, ViewRows
from ladle.online.keys import DUMMY_JOIN_KEY, key_types_for
from ladle.registry.base import RegistrySnapshot
from ladle.retrieval.response import OnlineResponse
from ladle.types import FieldStatus, ValueType

EntityRows = Sequence[Mapping[str, Any]] | Mapping[str, Any] | pd.DataFrame
Features = Sequence[str] | FeatureService | str

_PRESENT = int(FieldStatus.PRESENT)
_NULL = int(FieldStatus.NULL_VALUE)
_NOT_FOUND = int(FieldStatus.NOT_FOUND)
_OUTSIDE = int(FieldStatus.OUTSIDE_MAX_AGE)
_INT32 = (-(2**31), 2**31 - 1)


class SnapshotSource(Protocol):
    """Anything with a registry snapshot (the SQL registry, or a test double)."""

    def snapshot(self, *, allow_cache: bool = True) -> RegistrySnapshot:
        """The current definitions."""
        ...


@dataclass(frozen=True)
class _ViewRead:
    """One selection, compiled: what to ask the store and how to name the answer."""

    view: FeatureView
    features: tuple[str, ...]
    outputs: tuple[str, ...]
    key_columns: tuple[tuple[str, str], ...]  # (view join key, request column)
    ttl_us: int


@dataclass(frozen=True)
class _Plan:
    """A resolved request shape: entity columns to read and coerce, views to read, output names."""

    key_columns: tuple[str, ...]
    key_types: dict[str, ValueType | None]
    reads: tuple[_ViewRead, ...]
    feature_names: tuple[str, ...]
    uses_ttl: bool
    entityless: bool  # some view has no entities: it reads the dummy key "" for every row


class OnlineRetriever:
    """Serves ``get_online_features`` from a registry and an online store.

    ``clock`` returns the current time in seconds since the epoch (for ttl); tests inject one.
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
        self._cache: OrderedDict[Any, _Plan] = OrderedDict()
        self._cache_size = cache_size

    def get_online_features(
        self, features: Features, entity_rows: EntityRows, full_feature_names: bool = False
    ) -> OnlineResponse:
        """Latest values of ``features`` for each entity row (see the module docstring)."""
        snapshot = self.registry.snapshot()
        names, column, n = _entity_input(entity_rows)
        plan = self._plan(snapshot, features, full_feature_names, names)
        keys = {c: _coerce(c, column(c), plan.key_types[c]) for c in plan.key_columns}
        if plan.entityless:
            keys[DUMMY_JOIN_KEY] = [""] * n
        requests = [ReadRequest(r.view, r.features, {jk: keys[col] for jk, col in r.key_columns}) for r in plan.reads]
        results = self.online_store.read(snapshot.project, requests) if n else [_empty(r) for r in plan.reads]
        now_us = int(self.clock() * 1_000_000) if plan.uses_ttl else 0
        return _respond(plan, keys, results, n, now_us)

    def _plan(self, snapshot: RegistrySnapshot, features: Features, full: bool, names: tuple[str, ...]) -> _Plan:
        ref_key: Any = tuple(features) if isinstance(features, list | tuple) else features
        key = (snapshot.version, ref_key, full, names)
        try:
            plan = self._cache.get(key)
        except TypeError:  # an unhashable reference: let resolve() explain what is wrong with it
            return _compile(snapshot, features, full, names)
        if plan is None:
            plan = _compile(snapshot, features, full, names)
            self._cache[key] = plan
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        else:
            try:  # noqa: SIM105 -- the hot path: a bare try costs nothing, suppress() a context manager
                self._cache.move_to_end(key)
            except KeyError:  # another thread evicted it meanwhile; the plan is still good
                pass
        return plan


def _compile(snapshot: RegistrySnapshot, features: Features, full: bool, names: tuple[str, ...]) -> _Plan:
    if not isinstance(features, FeatureService | str | list | tuple):
        raise InvalidFeatureReferenceError(
            f"features must be a list of 'view:feature' references or a feature service, got {type(features).__name__}"
        )
    selections = resolve(snapshot, features, full)
    key_types: dict[str, ValueType | None] = {}
    reads = []
    for sel in selections:
        reads.append(_compile_selection(sel, names, full, key_types))
    outputs = tuple(o for r in reads for o in r.outputs)
    key_columns = tuple(n for n in names if n in key_types)
    entityless = any(not r.view.entities for r in reads)
    uses_ttl = any(r.ttl_us for r in reads)
    return _Plan(key_columns, key_types, tuple(reads), key_columns + outputs, uses_ttl, entityless)


def _compile_selection(
    sel: ViewSelection, names: tuple[str, ...], full: bool, key_types: dict[str, ValueType | None]
) -> _ViewRead:
    view = sel.view
    declared = key_types_for(view)
    pairs = []
    for join_key, column in zip(view.join_keys, sel.entity_columns(), strict=True):
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
    return _ViewRead(view, sel.features, tuple(sel.output_names(full)), tuple(pairs), ttl_us)


def entities_from_text(
    snapshot: RegistrySnapshot, features: Features, pairs: Sequence[tuple[str, str]]
) -> dict[str, list[Any]]:
    """Entity columns from ``key=value`` text (the CLI), typed by the join keys' dtypes.

    Repeating a key gives several rows; every key must be given the same number of times.
    """
    columns: dict[str, list[str]] = {}
    for key, value in pairs:
        columns.setdefault(key, []).append(value)
    plan = _compile(snapshot, features, True, tuple(columns))
    return {k: [_from_text(k, v, plan.key_types.get(k)) for v in vals] for k, vals in columns.items()}


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


def _empty(read: _ViewRead) -> ViewRows:
    return ViewRows([], {f: [] for f in read.features})


def _respond(plan: _Plan, keys: dict[str, list[Any]], results: list[ViewRows], n: int, now_us: int) -> OnlineResponse:
    present = [_PRESENT] * n
    zeros = [0] * n
    values: list[list[Any]] = [keys[c] for c in plan.key_columns]
    statuses: list[list[int]] = [present] * len(values)
    stamps: list[list[int]] = [zeros] * len(values)
    for read, rows in zip(plan.reads, results, strict=True):
        ts = rows.event_ts
        cutoff = now_us - read.ttl_us if read.ttl_us else None
        if None not in ts and (cutoff is None or not ts or min(ts) >= cutoff):  # type: ignore[type-var,operator]
            view_ts: list[int] = ts  # type: ignore[assignment]  # no None in it
            for f in read.features:
                col = rows.values[f]
                values.append(col)
                statuses.append([_NULL if v is None else _PRESENT for v in col] if None in col else present)
                stamps.append(view_ts)
            continue
        row_status = [
            _NOT_FOUND if t is None else _OUTSIDE if cutoff is not None and t < cutoff else _PRESENT for t in ts
        ]
        view_ts = [0 if t is None else t for t in ts]
        for f in read.features:
            col = [v if s == _PRESENT else None for v, s in zip(rows.values[f], row_status, strict=True)]
            values.append(col)
            statuses.append([_NULL if s == _PRESENT and v is None else s for v, s in zip(col, row_status, strict=True)])
            stamps.append(view_ts)
    return OnlineResponse(list(plan.feature_names), values, statuses, stamps)
