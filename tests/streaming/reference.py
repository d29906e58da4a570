"""The stream semantics of docs/streaming.md ("Semantics"), restated as slow, obvious Python.

Both executions (DuckDB batch, the incremental stream engine) are tested against this and against
each other. It takes events in arrival order and returns which were accepted, which were late, and
every output row's final values. Quadratic on purpose: nothing clever to get wrong.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from ladle.definitions import StreamFeatureView

Key = tuple[Any, ...]


@dataclass(frozen=True)
class Arrival:
    """One decoded event as it arrived: its Kafka partition and offset, and its row.

    ``row`` holds the source's columns after field mapping, with the event time (and the created
    time, if any) as integer microseconds since the epoch, UTC.
    """

    partition: int
    offset: int
    row: dict[str, Any]


@dataclass
class Expected:
    """What both executions must produce for a sequence of arrivals."""

    accepted: list[Arrival] = field(default_factory=list)
    late: list[Arrival] = field(default_factory=list)
    #: final watermark per partition (µs), None when the partition accepted nothing
    watermarks: dict[int, int | None] = field(default_factory=dict)
    #: (join key values, event time µs) → {feature: value}
    rows: dict[tuple[Key, int], dict[str, Any]] = field(default_factory=dict)


def expected(view: StreamFeatureView, arrivals: Sequence[Arrival]) -> Expected:
    """Apply rules 2 to 8 of the semantics to ``arrivals`` (rule 1, decoding, is already done)."""
    src = view.source
    ts, created = src.timestamp_field, src.created_timestamp_column
    delay = src.watermark_delay_threshold // _US  # type: ignore[attr-defined]
    out = Expected()
    newest: dict[int, int] = {}
    for a in arrivals:  # rule 2
        t = a.row[ts]
        if a.partition in newest and t < newest[a.partition] - delay:
            out.late.append(a)
            continue
        out.accepted.append(a)
        newest[a.partition] = max(newest.get(a.partition, t), t)
    out.watermarks = {p: newest[p] - delay if p in newest else None for p in {a.partition for a in arrivals}}

    survivors = _udf(view, out.accepted, ts, created)  # rule 3
    winners: dict[tuple[Key, int], tuple[Arrival, dict[str, Any]]] = {}
    for a, row in survivors:  # rule 4, among the udf's survivors: greatest created, then accepted last
        ident = (_key(view, row), row[ts])
        prev = winners.get(ident)
        if prev is None or (a.row.get(created) if created else 0) >= (prev[0].row.get(created) if created else 0):
            winners[ident] = (a, row)
    events = [row for _, (_, row) in sorted(winners.items(), key=lambda kv: (repr(kv[0][0]), kv[0][1]))]
    if not view.aggregations:  # rule 8
        for e in events:
            out.rows[(_key(view, e), e[ts])] = {f: e.get(f) for f in view.feature_names}
        return out

    by_key: dict[Key, list[dict[str, Any]]] = {}
    for e in events:
        by_key.setdefault(_key(view, e), []).append(e)
    slide = view.slide_interval
    raw_rows: list[tuple[Key, int, dict[str, Any]]] = []
    for key, evs in by_key.items():
        evs.sort(key=lambda e: e[ts])
        if slide is None:  # rule 5
            ends = sorted({e[ts] for e in evs})
        else:  # rule 6
            s, wmax = slide // _US, view.max_window // _US
            ends = sorted({end for e in evs for end in _ends(e[ts], s, wmax)})
        for end in ends:
            values = {}
            for agg in view.aggregations:
                w = agg.window // _US
                xs = [e.get(agg.column) for e in evs if end - w < e[ts] <= end]
                values[agg.name] = _apply(agg.function, [x for x in xs if not _missing(x)])
            raw_rows.append((key, end, values))
    if view.derive is not None and raw_rows:  # rule 7
        frame = pd.DataFrame([v for _, _, v in raw_rows])
        derived = view.derive(frame).to_dict("records")
        raw_rows = [(k, t, d) for (k, t, _), d in zip(raw_rows, derived, strict=True)]
    for key, end, values in raw_rows:
        out.rows[(key, end)] = {f: values.get(f) for f in view.feature_names}
    return out


_US = __import__("datetime").timedelta(microseconds=1)


def _udf(
    view: StreamFeatureView, accepted: list[Arrival], ts: str, created: str | None
) -> list[tuple[Arrival, dict[str, Any]]]:
    """Rule 3: the udf on every accepted event (times as datetime64[us, UTC]); each survivor with its event."""
    survivors: list[tuple[Arrival, dict[str, Any]]] = [(a, dict(a.row)) for a in accepted]
    if view.udf is None or not survivors:
        return survivors
    times = [c for c in (ts, created) if c]
    frame = pd.DataFrame([row for _, row in survivors], index=range(len(survivors), 2 * len(survivors)))
    for c in times:
        frame[c] = pd.to_datetime(frame[c], unit="us", utc=True).astype("datetime64[us, UTC]")
    frame = view.udf(frame)
    for c in times:
        if c in frame.columns:
            frame[c] = frame[c].astype("datetime64[us, UTC]").astype("int64")
    # the index says which event each output row is (the test udfs keep it, or keep whole identities)
    positions = _positions(frame, survivors, view, ts)
    return [(accepted[i], row) for i, row in zip(positions, frame.to_dict("records"), strict=True)]


def _positions(
    frame: pd.DataFrame, given: list[tuple[Arrival, dict[str, Any]]], view: StreamFeatureView, ts: str
) -> list[int]:
    """Which input event each udf output row is: its index, or, when the udf renumbered, the k-th event
    of its (K, t) in order (the tests' renumbering udf keeps or drops all the events of an identity)."""
    index = [i - len(given) for i in frame.index]  # the frame's index starts at len(given)
    rows = frame.to_dict("records")
    by_index = all(pd.api.types.is_integer(i) and 0 <= i < len(given) for i in index) and all(
        (_key(view, given[i][1]), given[i][1][ts]) == (_key(view, r), r[ts]) for i, r in zip(index, rows, strict=True)
    )
    if by_index and len(set(index)) == len(index):
        return [int(i) for i in index]
    slots: dict[tuple[Key, int], list[int]] = {}
    for i, (_, row) in enumerate(given):
        slots.setdefault((_key(view, row), row[ts]), []).append(i)
    return [slots[(_key(view, r), r[ts])].pop(0) for r in rows]


def _key(view: StreamFeatureView, row: dict[str, Any]) -> Key:
    return tuple(row[k] for k in view.join_keys)


def _ends(t: int, s: int, wmax: int) -> list[int]:
    """Window ends e (multiples of s) with e - wmax < t <= e."""
    first = -(-t // s) * s  # ceil(t / s) * s
    return list(range(first, t + wmax, s))


def _missing(x: Any) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def _apply(function: str, xs: list[Any]) -> Any:
    if function == "count":
        return len(xs)
    if not xs:
        return None
    vals = [float(x) for x in xs]
    if function == "sum":
        return math.fsum(vals)
    if function == "mean":
        return math.fsum(vals) / len(vals)
    if function == "min":
        return min(vals)
    if function == "max":
        return max(vals)
    if function == "stddev":
        return statistics.stdev(vals) if len(vals) >= 2 else None
    if function == "first":
        return vals[0]
    if function == "last":
        return vals[-1]
    raise AssertionError(function)


def close(a: Any, b: Any, tol: float = 1e-9) -> bool:
    """Equal, both missing, or floats equal to ``tol`` (relative, or absolute near zero)."""
    if _missing(a) or _missing(b):
        return _missing(a) and _missing(b)
    if isinstance(a, float) or isinstance(b, float):
        return math.isclose(float(a), float(b), rel_tol=tol, abs_tol=tol)
    return bool(a == b)
