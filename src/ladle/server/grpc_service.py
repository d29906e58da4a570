"""gRPC: ``feast.serving.ServingService``, ``GrpcFeatureServer`` (``feast listen``), health and reflection.

Two engines serve the same services with the same codes and messages: the built-in HTTP/2 server
(:mod:`ladle.server.grpc_native`, the default, several times faster) and grpc.aio (``grpc_engine:
grpcio``), each in the same event loop as the REST app. Errors become INVALID_ARGUMENT,
NOT_FOUND, ABORTED, UNAVAILABLE or INTERNAL with the error's message (see :mod:`.status`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

import ladle
from ladle.errors import RequestError
from ladle.server import codec, health, metrics
from ladle.server._proto.feast.serving import GrpcServer_pb2 as listen_pb
from ladle.server._proto.feast.serving import ServingService_pb2 as serving_pb
from ladle.server.core import OnlineRequest, ServerCore
from ladle.server.status import status_of
from ladle.server.wire import plan_response_bytes
from ladle.types import DType, ValueType

log = logging.getLogger(__name__)
T = TypeVar("T")
SERVING = serving_pb.DESCRIPTOR.services_by_name["ServingService"].full_name
LISTEN = listen_pb.DESCRIPTOR.services_by_name["GrpcFeatureServer"].full_name
READINESS_INTERVAL_SECONDS = 5.0


def parse_online_request(request: Any) -> OnlineRequest:
    """A ``GetOnlineFeaturesRequest`` as an :class:`OnlineRequest` (request_context is ignored)."""
    kind = request.WhichOneof("kind")
    if kind is None:
        raise RequestError("set 'features' (a FeatureList of 'view:feature') or 'feature_service'")
    entities = {key: codec.from_repeated(column) for key, column in request.entities.items()}
    if kind == "feature_service":
        return OnlineRequest(None, request.feature_service, entities, request.full_feature_names)
    return OnlineRequest(tuple(request.features.val), None, entities, request.full_feature_names)


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


async def watch_readiness(core: ServerCore, set_serving: Callable[[bool], Awaitable[None]]) -> None:
    """Check the registry and online store every few seconds and report the result to the health service."""
    while True:
        readiness = await health.check_readiness(core.store)
        await set_serving(readiness.ready)
        await asyncio.sleep(READINESS_INTERVAL_SECONDS)


class Services:
    """The RPCs' work, shared by both gRPC engines: messages in, messages (or bytes) out, Ladle errors raised."""

    def __init__(self, core: ServerCore) -> None:
        self.core = core

    def parse_online(self, request: Any) -> OnlineRequest:
        """A parsed ``GetOnlineFeaturesRequest``."""
        return parse_online_request(request)

    def read(self, request: OnlineRequest) -> bytes:
        """The ``GetOnlineFeaturesResponse`` bytes for one request."""
        response, plan = self.core.get_online_features(request)
        return plan_response_bytes(response, plan)

    async def push(self, request: Any) -> Any:
        """Push one row to every view fed by the push source named in ``stream_feature_view``."""
        source = request.stream_feature_view
        if not source:
            raise RequestError("'stream_feature_view' (the push source name) is required")
        snapshot = self.core.store.snapshot()
        snapshot.push_source(source)
        dtypes = {f.name: f.dtype for v in snapshot.views_fed_by(source) for f in (*v.entity_columns, *v.features)}
        columns = row_columns(request.features, request.typed_features, dtypes)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.core.push, source, columns, request.to or "online")
        return listen_pb.PushResponse(status=True)

    async def write(self, request: Any) -> Any:
        """Write one row straight into a view's online storage."""
        view = self.core.store.snapshot().feature_view(request.feature_view_name)
        dtypes = {f.name: f.dtype for f in (*view.entity_columns, *view.features)}
        columns = row_columns(request.features, request.typed_features, dtypes)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.core.write_to_online_store, view.name, columns)
        return listen_pb.WriteToOnlineStoreResponse(status=True)


class _Base:
    def __init__(self, core: ServerCore) -> None:
        self.core = core
        self.services = Services(core)

    async def _call(self, endpoint: str, context: Any, work: Callable[[], Awaitable[T]]) -> T:
        started = time.perf_counter()
        try:
            result = await work()
        # The boundary: every failure becomes a status code, never a dead worker.
        except Exception as exc:
            status = status_of(exc)
            if status.grpc == grpc.StatusCode.INTERNAL:
                log.error("%s failed", endpoint, exc_info=exc)
            metrics.observe_request(endpoint, "grpc", status.grpc.name, time.perf_counter() - started)
            await context.abort(status.grpc, str(exc) or type(exc).__name__)
            raise  # abort raises; this line only satisfies the type checker
        metrics.observe_request(endpoint, "grpc", "OK", time.perf_counter() - started)
        return result

    async def _online(self, request: Any) -> Any:
        parsed = self.services.parse_online(request)
        if parsed.rows > self.core.settings.offload_entities:
            return await asyncio.get_running_loop().run_in_executor(None, self.services.read, parsed)
        return self.services.read(parsed)


class ServingServicer(_Base):
    """``feast.serving.ServingService``."""

    async def GetFeastServingInfo(self, request: Any, context: Any) -> Any:
        """Ladle's version."""
        return serving_pb.GetFeastServingInfoResponse(version=ladle.__version__)

    async def GetOnlineFeatures(self, request: Any, context: Any) -> Any:
        """Latest feature values, column-major like the REST response."""
        return await self._call(f"/{SERVING}/GetOnlineFeatures", context, lambda: self._online(request))


class FeatureServerServicer(_Base):
    """``GrpcFeatureServer`` (no package), as ``feast listen`` serves it."""

    async def GetOnlineFeatures(self, request: Any, context: Any) -> Any:
        """Same as ``ServingService/GetOnlineFeatures``."""
        return await self._call(f"/{LISTEN}/GetOnlineFeatures", context, lambda: self._online(request))

    async def Push(self, request: Any, context: Any) -> Any:
        """Push one row to every view fed by the push source named in ``stream_feature_view``."""
        return await self._call(f"/{LISTEN}/Push", context, lambda: self.services.push(request))

    async def WriteToOnlineStore(self, request: Any, context: Any) -> Any:
        """Write one row straight into a view's online storage."""
        return await self._call(f"/{LISTEN}/WriteToOnlineStore", context, lambda: self.services.write(request))


def _unary(method: Any, request: Any, response: Any) -> Any:
    serialize = response.SerializeToString if response is not None else None  # None: handler returns bytes
    return grpc.unary_unary_rpc_method_handler(method, request.FromString, serialize)


def _handlers(serving: ServingServicer, listen: FeatureServerServicer) -> tuple[Any, ...]:
    """Method handlers; GetOnlineFeatures answers pre-encoded bytes (see :mod:`ladle.server.wire`)."""
    online = serving_pb.GetOnlineFeaturesRequest
    return (
        grpc.method_handlers_generic_handler(
            SERVING,
            {
                "GetFeastServingInfo": _unary(
                    serving.GetFeastServingInfo,
                    serving_pb.GetFeastServingInfoRequest,
                    serving_pb.GetFeastServingInfoResponse,
                ),
                "GetOnlineFeatures": _unary(serving.GetOnlineFeatures, online, None),
            },
        ),
        grpc.method_handlers_generic_handler(
            LISTEN,
            {
                "Push": _unary(listen.Push, listen_pb.PushRequest, listen_pb.PushResponse),
                "WriteToOnlineStore": _unary(
                    listen.WriteToOnlineStore, listen_pb.WriteToOnlineStoreRequest, listen_pb.WriteToOnlineStoreResponse
                ),
                "GetOnlineFeatures": _unary(listen.GetOnlineFeatures, online, None),
            },
        ),
    )


class GrpcioServer:
    """The grpc.aio server with every service, and a task keeping health statuses current."""

    def __init__(self, core: ServerCore, *, reuse_port: bool = False) -> None:
        self.core = core
        settings = core.settings
        options = [
            ("grpc.so_reuseport", 1 if reuse_port else 0),
            ("grpc.max_receive_message_length", settings.body_limit),
        ]
        self.server = grpc.aio.server(options=options)
        self.server.add_generic_rpc_handlers(_handlers(ServingServicer(core), FeatureServerServicer(core)))
        self.health = HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        names = [SERVING, LISTEN, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name]
        if settings.grpc_reflection:
            reflection.enable_server_reflection([*names, reflection.SERVICE_NAME], self.server)
        self._services = ["", SERVING, LISTEN]
        self._watch: asyncio.Task[None] | None = None
        self.port = 0

    async def start(self, host: str, port: int) -> int:
        """Bind and start; returns the bound port."""
        self.port = self.server.add_insecure_port(f"{host}:{port}")
        if not self.port:
            raise OSError(f"cannot listen for gRPC on {host}:{port} (address in use?)")
        await self.server.start()
        self._watch = asyncio.create_task(watch_readiness(self.core, self._set_serving))
        return self.port

    async def _set_serving(self, ready: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if ready else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in self._services:
            await self.health.set(name, status)

    async def stop(self, grace: float) -> None:
        """Report NOT_SERVING, refuse new calls and let running ones finish within ``grace`` seconds."""
        if self._watch is not None:
            self._watch.cancel()
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)


class GrpcServer:
    """The gRPC server ``ladle serve`` runs: the built-in engine (default) or grpcio's, by ``grpc_engine``."""

    def __init__(self, core: ServerCore, *, reuse_port: bool = False, engine: str | None = None) -> None:
        self.engine = engine or core.settings.grpc_engine
        self._reuse_port = reuse_port
        self._server: Any
        if self.engine == "grpcio":
            self._server = GrpcioServer(core, reuse_port=reuse_port)
        else:
            from ladle.server.grpc_native import NativeGrpcServer

            self._server = NativeGrpcServer(core)

    async def start(self, host: str, port: int) -> int:
        """Bind and start; returns the bound port."""
        if self.engine == "grpcio":
            return int(await self._server.start(host, port))
        return int(await self._server.start(host, port, reuse_port=self._reuse_port))

    async def stop(self, grace: float) -> None:
        """Report NOT_SERVING, refuse new calls and let running ones finish within ``grace`` seconds."""
        await self._server.stop(grace)
