"""How Ladle's errors become HTTP statuses, gRPC codes and the error bodies Feast clients parse.

Feast's SDK reads an error body as a JSON *string* holding
``{"module": "feast.errors", "class": "...", "message": "..."}``, imports that class and re-raises
it, so each Ladle error names a class that exists in ``feast.errors``. Where Feast answers a
caller's mistake with 500 (a missing join key, a name collision) Ladle answers 4xx.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc
import orjson

from ladle import errors


@dataclass(frozen=True)
class ErrorStatus:
    """The HTTP status, gRPC code and Feast error class one Ladle error maps to."""

    http: int
    grpc: grpc.StatusCode
    feast_class: str


# Most specific first: the first isinstance match wins.
_MAP: tuple[tuple[type[BaseException], ErrorStatus], ...] = (
    (errors.AuthenticationError, ErrorStatus(401, grpc.StatusCode.UNAUTHENTICATED, "FeastError")),
    (errors.PermissionDeniedError, ErrorStatus(403, grpc.StatusCode.PERMISSION_DENIED, "FeastPermissionError")),
    (errors.FeatureViewNotFoundError, ErrorStatus(404, grpc.StatusCode.NOT_FOUND, "FeatureViewNotFoundException")),
    (
        errors.FeatureServiceNotFoundError,
        ErrorStatus(404, grpc.StatusCode.NOT_FOUND, "FeatureServiceNotFoundException"),
    ),
    (errors.EntityNotFoundError, ErrorStatus(404, grpc.StatusCode.NOT_FOUND, "EntityNotFoundException")),
    # Feast answers an unknown push source with 422; kept for clients that branch on it.
    (errors.PushSourceNotFoundError, ErrorStatus(422, grpc.StatusCode.NOT_FOUND, "PushSourceNotFoundException")),
    (
        errors.DataSourceNotFoundError,
        ErrorStatus(404, grpc.StatusCode.NOT_FOUND, "DataSourceObjectNotFoundException"),
    ),
    (errors.ObjectNotFoundError, ErrorStatus(404, grpc.StatusCode.NOT_FOUND, "FeastObjectNotFoundException")),
    (
        errors.FeatureNameCollisionError,
        ErrorStatus(400, grpc.StatusCode.INVALID_ARGUMENT, "FeatureNameCollisionError"),
    ),
    (errors.RequestTooLargeError, ErrorStatus(413, grpc.StatusCode.INVALID_ARGUMENT, "FeastError")),
    (
        errors.RequestDataNotFoundError,
        ErrorStatus(400, grpc.StatusCode.INVALID_ARGUMENT, "RequestDataNotFoundInEntityRowsException"),
    ),
    (errors.RequestError, ErrorStatus(400, grpc.StatusCode.INVALID_ARGUMENT, "FeastError")),
    (errors.MaterializationInProgressError, ErrorStatus(409, grpc.StatusCode.ABORTED, "FeastError")),
    (errors.LeaseHeldError, ErrorStatus(409, grpc.StatusCode.ABORTED, "FeastError")),
    (errors.ConflictError, ErrorStatus(409, grpc.StatusCode.ABORTED, "FeastError")),
    (errors.BackendUnavailableError, ErrorStatus(503, grpc.StatusCode.UNAVAILABLE, "FeastError")),
    (errors.LadleError, ErrorStatus(500, grpc.StatusCode.INTERNAL, "FeastError")),
)
_INTERNAL = ErrorStatus(500, grpc.StatusCode.INTERNAL, "")


def status_of(exc: BaseException) -> ErrorStatus:
    """The status ``exc`` maps to; unexpected exceptions are 500 / INTERNAL."""
    for kind, status in _MAP:
        if isinstance(exc, kind):
            return status
    return _INTERNAL


def error_body(exc: BaseException, status: ErrorStatus) -> bytes:
    """Feast's double-encoded error body: a JSON string holding module, class and message.

    An unexpected exception gets a JSON string of its text, as Feast's server sends.
    """
    if not status.feast_class:
        return orjson.dumps(str(exc) or type(exc).__name__)
    if status.http == 401:  # Feast's auth dependency answers {"detail": "..."} (FastAPI's HTTPException)
        return orjson.dumps({"detail": str(exc)})
    detail = orjson.dumps({"module": "feast.errors", "class": status.feast_class, "message": str(exc)})
    return orjson.dumps(detail.decode())
