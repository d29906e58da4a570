"""Arrow IPC bodies of ``/get-historical-features`` (both directions), shared by client and server."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
import pyarrow as pa

from ladle.errors import RequestError

#: The content type of both bodies.
ARROW_STREAM = b"application/vnd.apache.arrow.stream"
_KEY = b"ladle.request"


def encode_request(entity: pa.Table, features: Sequence[str] | None, service: str | None, full: bool) -> bytes:
    """The request body: ``entity`` as an IPC stream whose schema metadata holds the request."""
    meta = {"features": list(features) if features is not None else None, "feature_service": service,
            "full_feature_names": full}  # fmt: skip
    schema = entity.schema.with_metadata({**(entity.schema.metadata or {}), _KEY: orjson.dumps(meta)})
    return table_bytes(entity.replace_schema_metadata(schema.metadata))


def decode_request(body: bytes) -> tuple[pa.Table, dict[str, Any]]:
    """``(entity table, request)`` from a request body; RequestError if it is not one."""
    table = read_table(body, "the request body")
    meta = (table.schema.metadata or {}).get(_KEY)
    if meta is None:
        raise RequestError("the Arrow stream has no 'ladle.request' schema metadata (features to retrieve)")
    try:
        request = orjson.loads(meta)
    except orjson.JSONDecodeError:
        raise RequestError("the 'ladle.request' schema metadata is not JSON") from None
    if not isinstance(request, dict):
        raise RequestError("the 'ladle.request' schema metadata must be a JSON object")
    features, service = request.get("features"), request.get("feature_service")
    if service is None and not (isinstance(features, list) and all(isinstance(f, str) for f in features)):
        raise RequestError("give 'features' (a list of 'view:feature') or 'feature_service' in 'ladle.request'")
    if service is not None and not isinstance(service, str):
        raise RequestError("'feature_service' must be a string")
    if not isinstance(request.get("full_feature_names", False), bool):
        raise RequestError("'full_feature_names' must be true or false")
    return table.replace_schema_metadata(None), request


def table_bytes(table: pa.Table) -> bytes:
    """``table`` as one Arrow IPC stream."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


def read_table(body: bytes, what: str) -> pa.Table:
    """An Arrow IPC stream as a table; RequestError if ``body`` is not one."""
    try:
        return pa.ipc.open_stream(pa.BufferReader(body)).read_all()
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError) as exc:
        raise RequestError(f"{what} is not an Arrow IPC stream: {exc}") from None
