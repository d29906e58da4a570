"""What both gRPC engines serve: service names, request parsing and the RPCs' work.

Two engines serve ``feast.serving.ServingService``, ``GrpcFeatureServer`` (``feast listen``),
health and reflection with the same codes and messages: the built-in HTTP/2 server
(:mod:`ladle.server.grpc_h2`, the default, several times faster) and grpc.aio
(:mod:`ladle.server.grpc_grpcio`, ``grpc_engine: grpcio``); :mod:`ladle.server.grpc_server`
picks one. Errors become INVALID_ARGUMENT, NOT_FOUND, ABORTED, UNAVAILABLE or INTERNAL with the
error's message (see :mod:`.status`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from ladle.errors import RequestError
from ladle.retrieval.variants import variant_label
from ladle.security.principal import ANONYMOUS, Principal
from ladle.server import codec, health
from ladle.server._proto.feast.serving import GrpcServer_pb2 as listen_pb
from ladle.server._proto.feast.serving import ServingService_pb2 as serving_pb
from ladle.server.core import OnlineRequest, ServerCore
from ladle.server.wire import plan_response_bytes
from ladle.types import DType, ValueType

SERVING = serving_pb.DESCRIPTOR.services_by_name["ServingService"].full_name
LISTEN = listen_pb.DESCRIPTOR.services_by_name["GrpcFeatureServer"].full_name
READINESS_INTERVAL_SECONDS = 5.0


def parse_online_request(request: Any, request_id: str | None = None) -> OnlineRequest:
    """A ``GetOnlineFeaturesRequest`` as an :class:`OnlineRequest` (``request_context`` columns join
    the entity columns: on-demand views read their request fields from there)."""
    kind = request.WhichOneof("kind")
    if kind is None:
        raise RequestError("set 'features' (a FeatureList of 'view:feature') or 'feature_service'")
    entities = {key: codec.from_repeated(column) for key, column in request.entities.items()}
    for key, column in request.request_context.items():
        entities.setdefault(key, codec.from_repeated(column))
    if kind == "feature_service":
        return OnlineRequest(None, request.feature_service, entities, request.full_feature_names, request_id)
    return OnlineRequest(tuple(request.features.val), None, entities, request.full_feature_names, request_id)


def _from_text(text: str, dtype: DType | None, column: str) -> Any:
    """One ``feast listen`` text value, converted to its column's dtype."""
    if dtype is None or dtype.is_list or dtype.value_type in (ValueType.STRING, ValueType.UNIX_TIMESTAMP):
        return text
    try:
        if dtype.value_type in (ValueType.INT32, ValueType.INT64):
            return int(text)
        if dtype.value_type in (ValueType.DOUBLE, ValueType.FLOAT):
            return float(text)
        if dtype.value_type == ValueType.BOOL:
            return {"true": True, "false": False, "1": True, "0": False}[text.strip().lower()]
    except (ValueError, KeyError):
        raise RequestError(f"column '{column}': {text!r} is not a valid {dtype}") from None
    return text.encode()


def row_columns(text: Mapping[str, str], typed: Mapping[str, Any], dtypes: Mapping[str, DType]) -> dict[str, list[Any]]:
    """One pushed row (text or typed values, not both) as a column map of one-element lists."""
    if text and typed:
        raise RequestError("set either 'features' or 'typed_features', not both")
    if typed:
        return {name: [codec.from_value(value)] for name, value in typed.items()}
    return {name: [_from_text(value, dtypes.get(name), name)] for name, value in text.items()}


async def watch_readiness(core: ServerCore, set_serving: Callable[[bool], Awaitable[None]]) -> asyncio.Task[None]:
    """Check the registry and online store once now, report it to the health service, and return the task that
    repeats the check every few seconds. Health is known when a server's ``start`` returns, so a client's first
    ``Check`` never sees the NOT_SERVING a health service starts with (the check's own timeout bounds the wait)."""
    await set_serving((await health.check_readiness(core.store)).ready)

    async def repeat() -> None:
        while True:
            await asyncio.sleep(READINESS_INTERVAL_SECONDS)
            await set_serving((await health.check_readiness(core.store)).ready)

    return asyncio.create_task(repeat())


class Services:
    """The RPCs' work, shared by both gRPC engines: messages in, messages (or bytes) out, Ladle errors raised."""

    def __init__(self, core: ServerCore) -> None:
        self.core = core

    def credential(self, metadata: Mapping[str, str]) -> str | None:
        """The ``authorization`` metadata, else ``x-api-key`` as a bearer value when the config allows it."""
        return self.core.credential(metadata.get("authorization"), metadata.get("x-api-key"))

    def quick(self, metadata: Mapping[str, str]) -> Principal | None:
        """The caller if known without blocking (always under ``no_auth`` and API keys), else None."""
        return self.core.quick_caller(self.credential(metadata))

    async def principal(self, metadata: Mapping[str, str]) -> Principal:
        """The caller of a call with ``metadata`` (UNAUTHENTICATED for a missing or wrong credential)."""
        return await self.core.caller(self.credential(metadata))

    def parse_online(self, request: Any, request_id: str | None = None) -> OnlineRequest:
        """A parsed ``GetOnlineFeaturesRequest``; ``request_id`` is the caller's ``x-request-id`` metadata,
        else one is generated for a feature service (the id its feature log rows carry)."""
        if request_id is None and request.WhichOneof("kind") != "feature_service":
            return parse_online_request(request)
        return parse_online_request(request, self.core.request_id(request_id, None))

    def read(self, request: OnlineRequest, principal: Principal = ANONYMOUS) -> bytes:
        """The ``GetOnlineFeaturesResponse`` bytes for one request."""
        response, plan = self.core.get_online_features(request, principal, "grpc")
        return plan_response_bytes(response, plan)

    def read_with_variant(self, request: OnlineRequest, principal: Principal = ANONYMOUS) -> tuple[bytes, str | None]:
        """:meth:`read`, and the split arm that answered (the ``ladle-variant`` metadata; None without a split)."""
        response, plan = self.core.get_online_features(request, principal, "grpc")
        return plan_response_bytes(response, plan), variant_label(response)

    async def push(self, request: Any, principal: Principal = ANONYMOUS) -> Any:
        """Push one row to every view fed by the push source named in ``stream_feature_view``."""
        source = request.stream_feature_view
        if not source:
            raise RequestError("'stream_feature_view' (the push source name) is required")
        snapshot = self.core.store.snapshot()
        snapshot.push_source(source)
        dtypes = {f.name: f.dtype for v in snapshot.views_fed_by(source) for f in (*v.entity_columns, *v.features)}
        columns = row_columns(request.features, request.typed_features, dtypes)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.core.push, source, columns, request.to or "online", principal, "grpc")
        return listen_pb.PushResponse(status=True)

    async def write(self, request: Any, principal: Principal = ANONYMOUS) -> Any:
        """Write one row straight into a view's online storage."""
        view = self.core.store.snapshot().feature_view(request.feature_view_name)
        dtypes = {f.name: f.dtype for f in (*view.entity_columns, *view.features)}
        columns = row_columns(request.features, request.typed_features, dtypes)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.core.write_to_online_store, view.name, columns, principal, "grpc")
        return listen_pb.WriteToOnlineStoreResponse(status=True)
