"""The grpcio engine (``grpc_engine: grpcio``): Ladle's gRPC services on grpc.aio.

The same services, status codes and messages as the built-in engine (:mod:`ladle.server.grpc_h2`);
the RPCs' work is :class:`ladle.server.grpc_service.Services`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

import ladle
from ladle.errors import ConfigError
from ladle.security.principal import ANONYMOUS, Principal
from ladle.server import metrics
from ladle.server._proto.feast.serving import GrpcServer_pb2 as listen_pb
from ladle.server._proto.feast.serving import ServingService_pb2 as serving_pb
from ladle.server.core import ServerCore
from ladle.server.grpc_service import LISTEN, SERVING, Services, watch_readiness
from ladle.server.status import status_of
from ladle.server.tls import TlsFiles

log = logging.getLogger(__name__)
T = TypeVar("T")


class _Base:
    def __init__(self, core: ServerCore) -> None:
        self.core = core
        self.services = Services(core)

    async def _call(self, endpoint: str, context: Any, work: Callable[[Principal], Awaitable[T]]) -> T:
        started = time.perf_counter()
        try:
            principal = ANONYMOUS
            if self.core.auth is not None:
                principal = await self.services.principal(dict(context.invocation_metadata()))
            result = await work(principal)
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

    async def _online(self, request: Any, principal: Principal, context: Any) -> Any:
        given = next((v for k, v in context.invocation_metadata() if k == "x-request-id"), None)
        parsed = self.services.parse_online(request, given)
        read = self.services.read_with_variant
        if parsed.rows > self.core.settings.offload_entities:
            answer, variant = await asyncio.get_running_loop().run_in_executor(None, read, parsed, principal)
        else:
            answer, variant = read(parsed, principal)
        # grpcio sends initial metadata once: the request id and the split arm go together
        metadata = [] if parsed.request_id is None else [("x-request-id", parsed.request_id)]
        if variant is not None:
            metadata.append(("ladle-variant", variant))
        if metadata:
            await context.send_initial_metadata(tuple(metadata))
        return answer


class ServingServicer(_Base):
    """``feast.serving.ServingService``."""

    async def GetFeastServingInfo(self, request: Any, context: Any) -> Any:
        """Ladle's version."""
        if self.core.auth is not None:
            try:
                await self.services.principal(dict(context.invocation_metadata()))
            except Exception as exc:
                await context.abort(status_of(exc).grpc, str(exc))
        return serving_pb.GetFeastServingInfoResponse(version=ladle.__version__)

    async def GetOnlineFeatures(self, request: Any, context: Any) -> Any:
        """Latest feature values, column-major like the REST response."""
        endpoint = f"/{SERVING}/GetOnlineFeatures"
        return await self._call(endpoint, context, lambda who: self._online(request, who, context))


class FeatureServerServicer(_Base):
    """``GrpcFeatureServer`` (no package), as ``feast listen`` serves it."""

    async def GetOnlineFeatures(self, request: Any, context: Any) -> Any:
        """Same as ``ServingService/GetOnlineFeatures``."""
        endpoint = f"/{LISTEN}/GetOnlineFeatures"
        return await self._call(endpoint, context, lambda who: self._online(request, who, context))

    async def Push(self, request: Any, context: Any) -> Any:
        """Push one row to every view fed by the push source named in ``stream_feature_view``."""
        return await self._call(f"/{LISTEN}/Push", context, lambda who: self.services.push(request, who))

    async def WriteToOnlineStore(self, request: Any, context: Any) -> Any:
        """Write one row straight into a view's online storage."""
        return await self._call(f"/{LISTEN}/WriteToOnlineStore", context, lambda who: self.services.write(request, who))


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


class _GuardReflection(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Refuses server reflection to callers without a valid credential (auth on, reflection not public)."""

    def __init__(self, services: Services) -> None:
        self.services = services

    async def intercept_service(self, continuation: Any, details: Any) -> Any:
        """Check the credential of reflection calls; every other call passes through untouched."""
        if details.method.startswith("/grpc.reflection."):
            try:
                await self.services.principal(dict(details.invocation_metadata or ()))
            except Exception as exc:
                return _refusal(status_of(exc).grpc, str(exc))
        return await continuation(details)


def _refusal(code: grpc.StatusCode, message: str) -> Any:
    async def refuse(requests: Any, context: Any) -> None:
        await context.abort(code, message)

    return grpc.stream_stream_rpc_method_handler(refuse)


class GrpcioEngine:
    """The grpc.aio server with every service, and a task keeping health statuses current."""

    def __init__(self, core: ServerCore, *, reuse_port: bool = False, tls: TlsFiles | None = None) -> None:
        self.core = core
        self.tls = tls
        if tls is not None and tls.client_ca is not None and not tls.require_client_cert:
            raise ConfigError("TLS: grpc_engine grpcio cannot make client certificates optional; use 'required'")
        settings = core.settings
        options = [
            ("grpc.so_reuseport", 1 if reuse_port else 0),
            ("grpc.max_receive_message_length", settings.body_limit),
            # The limits grpcio has a knob for; the others are the built-in engine's alone.
            ("grpc.max_concurrent_streams", settings.grpc_max_streams_per_connection),
            ("grpc.max_connection_idle_ms", int(settings.grpc_idle_timeout * 1000)),
            ("grpc.server_handshake_timeout_ms", int(settings.grpc_handshake_timeout * 1000)),
        ]
        guard = Services(core)
        interceptors = [_GuardReflection(guard)] if core.auth is not None and not core.is_public("reflection") else []
        self.server = grpc.aio.server(options=options, interceptors=interceptors)
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
        if self.tls is None:
            self.port = self.server.add_insecure_port(f"{host}:{port}")
        else:
            credentials = grpc.ssl_server_credentials(
                [(self.tls.key, self.tls.cert)],
                root_certificates=self.tls.client_ca,
                require_client_auth=self.tls.require_client_cert,
            )
            self.port = self.server.add_secure_port(f"{host}:{port}", credentials)
        if not self.port:
            raise OSError(f"cannot listen for gRPC on {host}:{port} (address in use?)")
        await self.server.start()
        self._watch = await watch_readiness(self.core, self._set_serving)
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
