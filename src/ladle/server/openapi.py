"""The REST API's OpenAPI 3.1 document, hand-written: no pydantic on the request path (/docs: ladle.server.swagger)."""

from __future__ import annotations

from typing import Any

import ladle
from ladle.types import FieldStatus

_ERROR = {
    "description": (
        "Feast's error shape: a JSON string holding a JSON object "
        '{"module": "feast.errors", "class": "...", "message": "..."}'
    ),
    "content": {"application/json": {"schema": {"type": "string"}}},
}


def _errors(*codes: int) -> dict[str, Any]:
    return {str(code): _ERROR for code in codes}


def _json_body(schema: dict[str, Any], example: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema, "example": example}}}


_CODE = "commodity_code"
_ONLINE_EXAMPLE = {
    "features": ["commodity_price_features:current_price", "commodity_price_features:price_change_24h"],
    "entities": {_CODE: ["crude_oil_wti"]},
}
_PUSH_EXAMPLE = {
    "push_source_name": "commodity_prices_push",
    "df": {_CODE: ["crude_oil_wti"], "current_price": [78.5], "event_timestamp": ["2024-01-05T12:00:00Z"]},
    "to": "online",
}
_WRITE_EXAMPLE = {
    "feature_view_name": "commodity_price_features",
    "df": {_CODE: ["crude_oil_wti"], "current_price": [78.5], "event_timestamp": ["2024-01-05T12:00:00"]},
}
_MATERIALIZE_EXAMPLE = {
    "start_ts": "2024-01-01T00:00:00Z",
    "end_ts": "2024-01-06T00:00:00Z",
    "feature_views": ["commodity_price_features"],
}


_COLUMNS = {
    "type": "object",
    "description": "Column name -> list of values (one per row); a scalar is repeated for every row.",
    "additionalProperties": True,
    "minProperties": 1,
}
_ONLINE_REQUEST = {
    "type": "object",
    "description": "Give `features` or `feature_service` (which wins when both are present).",
    "properties": {
        "features": {"type": "array", "items": {"type": "string"}, "description": "'view:feature' references"},
        "feature_service": {"type": "string"},
        "entities": {
            "type": "object",
            "description": "Join key -> list of values; every list has the same length (one per entity row).",
            "additionalProperties": {"type": "array"},
        },
        "full_feature_names": {"type": "boolean", "default": False},
        "include_feature_view_version_metadata": {"type": "boolean", "default": False, "description": "ignored"},
    },
    "required": ["entities"],
}
_ONLINE_RESPONSE = {
    "type": "object",
    "required": ["metadata", "results"],
    "properties": {
        "metadata": {
            "type": "object",
            "required": ["feature_names"],
            "properties": {"feature_names": {"type": "array", "items": {"type": "string"}}},
        },
        "results": {
            "type": "array",
            "description": "results[i] is the column metadata.feature_names[i]; join keys come first.",
            "items": {
                "type": "object",
                "required": ["values", "statuses", "event_timestamps"],
                "properties": {
                    "values": {"type": "array"},
                    "statuses": {"type": "array", "items": {"enum": [s.name for s in FieldStatus]}},
                    "event_timestamps": {"type": "array", "items": {"type": "string"}},
                },
            },
        },
    },
}
_PUSH_REQUEST = {
    "type": "object",
    "properties": {
        "push_source_name": {"type": "string"},
        "df": _COLUMNS,
        "to": {"enum": ["online", "offline", "online_and_offline"], "default": "online"},
        "allow_registry_cache": {"type": "boolean", "default": True},
        "transform_on_write": {"type": "boolean", "default": True},
    },
    "required": ["push_source_name", "df"],
}
_WRITE_REQUEST = {
    "type": "object",
    "properties": {
        "feature_view_name": {"type": "string"},
        "df": _COLUMNS,
        "allow_registry_cache": {"type": "boolean", "default": True},
        "transform_on_write": {"type": "boolean", "default": True},
    },
    "required": ["feature_view_name", "df"],
}
_VIEWS = {"type": "array", "items": {"type": "string"}, "description": "default: every online feature view"}
_MATERIALIZE_REQUEST = {
    "type": "object",
    "properties": {
        "start_ts": {"type": "string", "description": "ISO 8601; naive means UTC"},
        "end_ts": {"type": "string", "description": "ISO 8601; naive means UTC"},
        "feature_views": _VIEWS,
        "disable_event_timestamp": {"type": "boolean", "default": False, "description": "materialize epoch -> now"},
    },
}
_INCREMENTAL_REQUEST = {
    "type": "object",
    "properties": {"end_ts": {"type": "string"}, "feature_views": _VIEWS},
    "required": ["end_ts"],
}
_ASYNC = [
    {
        "name": "async",
        "in": "query",
        "required": False,
        "schema": {"type": "boolean"},
        "description": "run in the background and answer 202 at once",
    },
    {"name": "force", "in": "query", "required": False, "schema": {"type": "boolean"}, "description": "ignored"},
]
_ACCEPTED = {
    "description": "accepted (async=true)",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["status", "feature_views"],
                "properties": {"status": {"const": "accepted"}, "feature_views": {"type": "array"}},
            }
        }
    },
}
_TEXT = {"type": "string"}
_NULL = {"description": "done", "content": {"application/json": {"schema": {"type": "null"}}}}
_READY = {
    "type": "object",
    "required": ["status", "checks"],
    "properties": {
        "status": {"enum": ["ready", "unavailable"]},
        "checks": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}


def _materialize_op(summary: str, body: dict[str, Any], example: dict[str, Any]) -> dict[str, Any]:
    return {
        "post": {
            "summary": summary,
            "parameters": _ASYNC,
            "requestBody": _json_body(body, example),
            "responses": {"200": _NULL, "202": _ACCEPTED, **_errors(400, 404, 409, 413, 500, 503)},
        }
    }


OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "Ladle feature server",
        "version": ladle.__version__,
        "description": "Feast-compatible feature serving. Request bodies are parsed as JSON whatever the Content-Type.",
    },
    "paths": {
        "/get-online-features": {
            "post": {
                "summary": "Latest feature values for a batch of entities (Feast's column-major JSON).",
                "requestBody": _json_body(_ONLINE_REQUEST, _ONLINE_EXAMPLE),
                "responses": {
                    "200": {"description": "values", "content": {"application/json": {"schema": _ONLINE_RESPONSE}}},
                    **_errors(400, 404, 413, 500, 503),
                },
            }
        },
        "/get-historical-features": {
            "post": {
                "summary": "A point-in-time training set (offline_store type remote): Arrow IPC in and out.",
                "requestBody": {
                    "required": True,
                    "content": {
                        # An Arrow IPC stream (the client labels it application/vnd.apache.arrow.stream).
                        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                    },
                },
                "responses": {
                    "200": {
                        "description": "the training frame as an Arrow IPC stream",
                        "content": {
                            "application/vnd.apache.arrow.stream": {"schema": {"type": "string", "format": "binary"}}
                        },
                    },
                    **_errors(400, 401, 403, 404, 413, 500),
                },
            }
        },
        "/push": {
            "post": {
                "summary": "Write rows to every feature view fed by a push source.",
                "requestBody": _json_body(_PUSH_REQUEST, _PUSH_EXAMPLE),
                "responses": {"200": {"description": "pushed (empty body)"}, **_errors(400, 404, 413, 422, 500, 503)},
            }
        },
        "/write-to-online-store": {
            "post": {
                "summary": "Write rows straight into one feature view's online storage.",
                "requestBody": _json_body(_WRITE_REQUEST, _WRITE_EXAMPLE),
                "responses": {"200": _NULL, **_errors(400, 404, 413, 500, 503)},
            }
        },
        "/materialize": _materialize_op(
            "Materialize feature views over [start_ts, end_ts].", _MATERIALIZE_REQUEST, _MATERIALIZE_EXAMPLE
        ),
        "/materialize-incremental": _materialize_op(
            "Materialize feature views from their watermark up to end_ts.",
            _INCREMENTAL_REQUEST,
            {k: v for k, v in _MATERIALIZE_EXAMPLE.items() if k != "start_ts"},
        ),
        "/health": {"get": {"summary": "Liveness.", "responses": {"200": {"description": "alive (empty body)"}}}},
        "/ready": {
            "get": {
                "summary": "Readiness: the registry and the online store answer.",
                "responses": {
                    "200": {"description": "ready", "content": {"application/json": {"schema": _READY}}},
                    "503": {"description": "not ready", "content": {"application/json": {"schema": _READY}}},
                },
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics (summed over every worker).",
                "responses": {
                    "200": {"description": "metrics", "content": {"text/plain": {"schema": {"type": "string"}}}}
                },
            }
        },
    },
}
