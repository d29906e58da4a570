"""The remote store's sans-IO half: request bodies and answers, shared by the sync and async clients."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any

import orjson

from ladle.definitions import FeatureService
from ladle.errors import (
    AuthenticationError,
    BackendUnavailableError,
    EntityKeyError,
    LadleError,
    PermissionDeniedError,
    RequestError,
)
from ladle.types import FieldStatus

_STATUS = {s.name: int(s) for s in FieldStatus}


def entity_columns(rows: Any) -> dict[str, list[Any]]:
    """Any accepted ``entity_rows`` form (list of dicts, dict of columns, DataFrame) as columns."""
    if isinstance(rows, Mapping):
        return {str(k): list(v.tolist() if hasattr(v, "tolist") else v) for k, v in rows.items()}
    if hasattr(rows, "to_dict") and hasattr(rows, "columns"):  # a pandas DataFrame
        return {str(k): list(v) for k, v in rows.to_dict(orient="list").items()}
    if isinstance(rows, Sequence) and not isinstance(rows, str | bytes):
        if not rows:
            return {}
        if not all(isinstance(r, Mapping) for r in rows):
            raise EntityKeyError("entity rows must be dicts of join key to value")
        names = list(rows[0])
        try:
            return {n: [r[n] for r in rows] for n in names}
        except KeyError as exc:
            raise EntityKeyError(f"an entity row lacks '{exc.args[0]}'") from None
    kind = type(rows).__name__
    raise EntityKeyError(f"entity_rows must be a list of dicts, a dict of columns or a DataFrame, got {kind}")


def online_body(features: Sequence[str] | FeatureService | str, entity_rows: Any, full_feature_names: bool) -> bytes:
    """The ``/get-online-features`` JSON body."""
    payload: dict[str, Any] = {"entities": entity_columns(entity_rows), "full_feature_names": full_feature_names}
    if isinstance(features, FeatureService):
        payload["feature_service"] = features.name
    elif isinstance(features, str):
        payload["feature_service"] = features
    else:
        payload["features"] = list(features)
    return orjson.dumps(payload)


#: A column-major answer: feature names, values, statuses, event timestamps (µs); the fields of
#: :class:`ladle.retrieval.response.OnlineResponse`, which the façade builds from it.
Answer = tuple[list[str], list[list[Any]], list[list[int]], list[list[int]]]


def online_response(body: bytes) -> Answer:
    """A server's ``/get-online-features`` answer as :data:`Answer` columns."""
    try:
        data = orjson.loads(body)
        names = list(data["metadata"]["feature_names"])
        results = data["results"]
        values = [list(r["values"]) for r in results]
        statuses = [[_STATUS.get(s, 0) for s in r.get("statuses", ["PRESENT"] * len(r["values"]))] for r in results]
        stamps = [[micros(t) for t in r.get("event_timestamps", [])] or [0] * len(r["values"]) for r in results]
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        what = "the feature server's answer is not a get-online-features response"
        raise BackendUnavailableError(f"{what}: {exc}") from None
    return names, values, statuses, stamps


@lru_cache(maxsize=4096)
def micros(text: str) -> int:
    """An RFC 3339 timestamp (``...Z``) as microseconds since the epoch."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return int(moment.timestamp()) * 1_000_000 + moment.microsecond


def error_of(status: int, body: bytes, url: str | None = None) -> LadleError:
    """A server's error answer as Ladle's typed error, with the server's message (after ``url``, if given)."""
    message = body.decode("utf-8", "replace")
    try:
        data = orjson.loads(body)
        if isinstance(data, str):  # Feast's double-encoded error body
            data = orjson.loads(data)
        if isinstance(data, dict):
            message = str(data.get("detail") or data.get("message") or message)
    except orjson.JSONDecodeError:
        pass
    where = f"{url}: " if url else ""
    if status == 401:
        return AuthenticationError(f"{where}{message}")
    if status == 403:
        return PermissionDeniedError(f"{where}{message}")
    if 400 <= status < 500:
        return RequestError(f"{where}HTTP {status}: {message}")
    return BackendUnavailableError(f"{where}HTTP {status}: {message}")
