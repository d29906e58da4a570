"""Feast's JSON for online responses (orjson), and Feast's ``Value`` protos decoded to Python.

(The gRPC response is encoded by :mod:`ladle.server.wire`.)

JSON follows Feast's column-major shape exactly::

    {"metadata": {"feature_names": ["commodity_code", "current_price"]},
     "results": [{"values": ["crude_oil_wti"], "statuses": ["PRESENT"],
                  "event_timestamps": ["1970-01-01T00:00:00Z"]},
                 {"values": [78.1], "statuses": ["PRESENT"],
                  "event_timestamps": ["2024-01-05T23:00:12Z"]}]}

Values go to orjson as they are (numbers, strings, bools, lists); only ``bytes`` (base64) and
``datetime`` (epoch seconds, like Feast's ``unix_timestamp_val``) pass through a hook, so encoding
costs no Python per value. Timestamps are formatted once per distinct value (cached).
"""

from __future__ import annotations

import base64
import dataclasses
import operator
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from ladle import documents
from ladle.errors import RequestError
from ladle.retrieval.plan import OnlinePlan
from ladle.retrieval.response import OnlineResponse
from ladle.server.wire import epoch_seconds
from ladle.types import FieldStatus, ValueType

STATUS_NAMES: tuple[str, ...] = tuple(s.name for s in sorted(FieldStatus))
EPOCH_TEXT = "1970-01-01T00:00:00Z"
_EPOCH = datetime(1970, 1, 1)
_JSON_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_SERIALIZE_NUMPY
_TS_CACHE: dict[int, str] = {0: EPOCH_TEXT}
_TS_CACHE_MAX = 1 << 16
_EMPTY_LIST = orjson.Fragment(b"[]")


def format_timestamp(micros: int) -> str:
    """RFC 3339 UTC with a ``Z`` and adaptive fractional digits (none, 3 or 6), as Feast prints."""
    text = _TS_CACHE.get(micros)
    if text is None:
        moment = _EPOCH + timedelta(microseconds=micros)
        if micros % 1_000_000 == 0:
            text = moment.isoformat(timespec="seconds") + "Z"
        elif micros % 1000 == 0:
            text = moment.isoformat(timespec="milliseconds") + "Z"
        else:
            text = moment.isoformat(timespec="microseconds") + "Z"
        if len(_TS_CACHE) >= _TS_CACHE_MAX:
            _TS_CACHE.clear()
            _TS_CACHE[0] = EPOCH_TEXT
        _TS_CACHE[micros] = text
    return text


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, datetime):
        return epoch_seconds(value)
    if isinstance(value, (set, frozenset)):
        return list(value)
    item = getattr(value, "item", None)  # NumPy scalars
    if item is not None:
        return item()
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def dumps(obj: Any) -> bytes:
    """orjson with Ladle's hooks (bytes → base64, datetime → epoch seconds, NaN → null)."""
    return orjson.dumps(obj, default=_json_default, option=_JSON_OPTIONS)


def format_timestamps(micros: Sequence[int]) -> list[str]:
    """:func:`format_timestamp` over a column (cache hits cost one dict lookup each)."""
    texts = list(map(_TS_CACHE.get, micros))
    if None in texts:
        texts = [t if t is not None else format_timestamp(m) for t, m in zip(texts, micros, strict=True)]
    return texts  # type: ignore[return-value]


def online_response_json(response: OnlineResponse, plan: OnlinePlan | None = None) -> bytes:
    """Feast's ``/get-online-features`` JSON body for ``response`` (read with ``plan``, if given).

    With the plan, the ``metadata`` part is serialized once per plan and each view's statuses and
    timestamps once per request. ``Json`` features are sent as their JSON text (Feast's ``json_val``
    is a string); ``Map`` and ``Struct`` values are JSON objects.
    """
    response = _json_as_text(response, plan)
    if plan is None or tuple(response.feature_names) != plan.feature_names:
        results = _results(response.values, response.statuses, response.event_timestamps)
        return dumps({"metadata": {"feature_names": response.feature_names}, "results": results})
    keys = len(plan.key_columns)
    results = _results(response.values[:keys], response.statuses[:keys], response.event_timestamps[:keys])
    fragments: dict[int, Any] = {}  # status lists are shared across views: each converted once
    for read in plan.reads:
        results += _view_results(response, read.start, read.stop, fragments)
    return dumps({"metadata": _plan_metadata(plan), "results": results})


def _json_as_text(response: OnlineResponse, plan: OnlinePlan | None) -> OnlineResponse:
    """``response`` with the values of its ``Json`` columns as JSON text (a copy; the same if none)."""
    if plan is None:
        return response
    dtypes = plan.dtype_map()
    texts = [i for i, n in enumerate(response.feature_names) if (d := dtypes.get(n)) and d.value_type == ValueType.JSON]
    if not texts:
        return response
    values = list(response.values)
    for i in texts:
        values[i] = [None if v is None else documents.dumps(v) for v in values[i]]
    return dataclasses.replace(response, values=values)


def _results(values: list[Any], statuses: list[list[int]], stamps: list[list[int]]) -> list[dict[str, Any]]:
    # Columns of one view share their timestamp list, fully present columns one status list, and
    # shared lists sit side by side: each run of one list object is serialized once (a Fragment).
    last_statuses: object = None
    last_stamps: object = None
    names = texts = _EMPTY_LIST
    results: list[dict[str, Any]] = []
    append = results.append
    for column, column_statuses, column_stamps in zip(values, statuses, stamps, strict=True):
        if column_statuses is not last_statuses:
            last_statuses, names = column_statuses, _status_fragment(column_statuses)
        if column_stamps is not last_stamps:
            last_stamps, texts = column_stamps, orjson.Fragment(orjson.dumps(format_timestamps(column_stamps)))
        append({"values": column, "statuses": names, "event_timestamps": texts})
    return results


def _view_results(response: OnlineResponse, start: int, stop: int, fragments: dict[int, Any]) -> list[dict[str, Any]]:
    """The results of one view's columns; one comprehension when they share statuses and timestamps."""
    values, statuses, stamps = response.values[start:stop], response.statuses, response.event_timestamps
    view_statuses, view_stamps = statuses[start], stamps[start]
    width = stop - start
    if statuses[start:stop].count(view_statuses) != width or stamps[start:stop].count(view_stamps) != width:
        return _results(values, statuses[start:stop], stamps[start:stop])
    names = fragments.get(id(view_statuses))
    if names is None:
        names = fragments[id(view_statuses)] = _status_fragment(view_statuses)
    texts = orjson.Fragment(orjson.dumps(format_timestamps(view_stamps)))
    return [{"values": column, "statuses": names, "event_timestamps": texts} for column in values]


def _status_fragment(statuses: list[int]) -> Any:
    return orjson.Fragment(orjson.dumps(list(map(STATUS_NAMES.__getitem__, statuses))))


def _plan_metadata(plan: OnlinePlan) -> Any:
    fragment = plan.encodings.get("json_metadata")
    if fragment is None:
        fragment = plan.encodings["json_metadata"] = orjson.Fragment(
            orjson.dumps({"feature_names": list(plan.feature_names)})
        )
    return fragment


# -- protos -----------------------------------------------------------------------------------

_SCALAR_KINDS = frozenset({"bytes_val", "string_val", "int32_val", "int64_val", "double_val", "float_val", "bool_val"})


def from_value(value: Any) -> Any:
    """A ``Value`` proto as a Python value (``None`` for unset or ``null_val``).

    ``unix_timestamp_val`` becomes a UTC ``datetime``; lists become Python lists. A value kind Ladle
    does not declare (a newer Feast type) raises :class:`~ladle.errors.RequestError`.
    """
    kind = value.WhichOneof("val")
    if kind in _SCALAR_KINDS:
        return getattr(value, kind)
    if kind is None:
        if value.ByteSize():
            raise RequestError("a Value uses a type Ladle does not support (supported: tags 1-8 and 11-19)")
        return None
    if kind == "null_val":
        return None
    if kind == "unix_timestamp_val":
        return datetime.fromtimestamp(value.unix_timestamp_val, UTC)
    items = list(getattr(value, kind).val)
    if kind == "unix_timestamp_list_val":
        return [datetime.fromtimestamp(x, UTC) for x in items]
    return items


_FAST_KINDS = {kind: operator.attrgetter(kind) for kind in ("string_val", "int64_val", "int32_val")}


def from_repeated(values: Any) -> list[Any]:
    """A ``RepeatedValue`` (one entity column) as a Python list.

    Entity columns are usually all strings or all integers. A non-empty ``string_val`` (or a
    non-zero integer) can only come from a Value whose oneof is set to that field, so when every
    item of the first value's kind is non-empty/non-zero the column is read with one attribute
    per value; anything else (an empty string, a zero, another kind) takes the exact path.
    """
    items = values.val
    if items:
        getter = _FAST_KINDS.get(items[0].WhichOneof("val"))
        if getter is not None:
            column = list(map(getter, items))
            if all(column):
                return column
    return [from_value(v) for v in items]
