"""The built-in engine (the default): Ladle's gRPC services on :mod:`ladle.server.h2grpc`.

The same services as the grpcio engine in :mod:`ladle.server.grpc_grpcio`, with the same
status codes and messages: ``feast.serving.ServingService``, ``GrpcFeatureServer`` (what
``feast listen`` serves), ``grpc.health.v1.Health`` (Check and Watch) and server reflection
(``grpc.reflection.v1`` and ``v1alpha``). Handlers take and return message bytes; small online
reads answer synchronously inside the connection's read callback, so the hot path creates no task.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from ssl import SSLContext
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.message import DecodeError
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2

import ladle
from ladle.security.principal import ANONYMOUS, Principal
from ladle.server import metrics
from ladle.server._proto.feast.serving import GrpcServer_pb2 as listen_pb
from ladle.server._proto.feast.serving import ServingService_pb2 as serving_pb
from ladle.server.core import ServerCore
from ladle.server.grpc_service import LISTEN, SERVING, Services, watch_readiness
from ladle.server.h2grpc import CallContext, GrpcError, H2GrpcServer, Limits, Method, Status
from ladle.server.settings import ServerSettings
from ladle.server.sockets import reuseport_socket
from ladle.server.status import status_of

log = logging.getLogger(__name__)
HEALTH = "grpc.health.v1.Health"
REFLECTION_NAMES = ("grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection")


def _parse(message_class: Any, data: bytes) -> Any:
    try:
        return message_class.FromString(data)
    except DecodeError as exc:
        name = message_class.DESCRIPTOR.full_name
        raise GrpcError(Status.INVALID_ARGUMENT, f"the request is not a valid {name}: {exc}") from None


def _grpc_error(endpoint: str, exc: Exception, started: float) -> GrpcError:
    """A Ladle (or unexpected) error as the status the grpcio engine would answer, metrics recorded."""
    if isinstance(exc, GrpcError):
        code = exc.status
        message = exc.message
    else:
        status = status_of(exc)
        code = Status(status.grpc.value[0])
        message = str(exc) or type(exc).__name__
        if code == Status.INTERNAL:
            log.error("%s failed", endpoint, exc_info=exc)
    metrics.observe_request(endpoint, "grpc", code.name, time.perf_counter() - started)
    return GrpcError(code, message)


class HealthService:
    """``grpc.health.v1.Health``: Check, and Watch streaming every change."""

    def __init__(self, services: Iterable[str]) -> None:
        self.statuses: dict[str, int] = dict.fromkeys(services, health_pb2.HealthCheckResponse.NOT_SERVING)
        self._changed = asyncio.Condition()
        self.closed = False

    async def set_all(self, status: int) -> None:
        """Set every service's status and wake the watchers if it changed."""
        if any(v != status for v in self.statuses.values()):
            for name in self.statuses:
                self.statuses[name] = status
            async with self._changed:
                self._changed.notify_all()

    async def shutdown(self) -> None:
        """NOT_SERVING everywhere; watchers get that and their streams end (so they do not hold up a stop)."""
        await self.set_all(health_pb2.HealthCheckResponse.NOT_SERVING)
        self.closed = True
        async with self._changed:
            self._changed.notify_all()

    def check(self, data: bytes, context: CallContext) -> bytes:
        """Current status of one service; NOT_FOUND for a service this server does not have."""
        service = _parse(health_pb2.HealthCheckRequest, data).service
        status = self.statuses.get(service)
        if status is None:
            raise GrpcError(Status.NOT_FOUND, f"unknown service {service!r}")
        return bytes(health_pb2.HealthCheckResponse(status=status).SerializeToString())

    async def watch(self, data: bytes, context: CallContext) -> AsyncIterator[bytes]:
        """The status now, then each change (SERVICE_UNKNOWN for a service this server does not have)."""
        service = _parse(health_pb2.HealthCheckRequest, data).service
        last = None
        while True:
            status = self.statuses.get(service, health_pb2.HealthCheckResponse.SERVICE_UNKNOWN)
            if status != last:
                last = status
                yield health_pb2.HealthCheckResponse(status=status).SerializeToString()
            if self.closed:
                return
            async with self._changed:
                await self._changed.wait()


class ReflectionService:
    """Server reflection: service list, files by name or symbol (with their dependencies), extensions."""

    def __init__(self, services: Iterable[str]) -> None:
        self.services = sorted(services)
        self.pool = descriptor_pool.Default()

    def _files(self, descriptor: Any) -> list[bytes]:
        seen: dict[str, Any] = {}
        todo = [descriptor]
        while todo:
            current = todo.pop()
            if current.name in seen:
                continue
            seen[current.name] = current
            todo.extend(current.dependencies)
        out = []
        for file in seen.values():
            proto = descriptor_pb2.FileDescriptorProto()
            file.CopyToProto(proto)
            out.append(proto.SerializeToString())
        return out

    def answer(self, request: Any) -> Any:
        """One ``ServerReflectionResponse`` for one request."""
        response = reflection_pb2.ServerReflectionResponse(valid_host=request.host, original_request=request)
        kind = request.WhichOneof("message_request")
        try:
            if kind == "list_services":
                response.list_services_response.service.extend(
                    reflection_pb2.ServiceResponse(name=name) for name in self.services
                )
            elif kind == "file_by_filename":
                files = self._files(self.pool.FindFileByName(request.file_by_filename))
                response.file_descriptor_response.file_descriptor_proto.extend(files)
            elif kind == "file_containing_symbol":
                files = self._files(self.pool.FindFileContainingSymbol(request.file_containing_symbol))
                response.file_descriptor_response.file_descriptor_proto.extend(files)
            elif kind == "file_containing_extension":
                extension = request.file_containing_extension
                message = self.pool.FindMessageTypeByName(extension.containing_type)
                found = self.pool.FindExtensionByNumber(message, extension.extension_number)
                files = self._files(self.pool.FindFileContainingSymbol(found.full_name))
                response.file_descriptor_response.file_descriptor_proto.extend(files)
            elif kind == "all_extension_numbers_of_type":
                message = self.pool.FindMessageTypeByName(request.all_extension_numbers_of_type)
                numbers = sorted(e.number for e in self.pool.FindAllExtensions(message))
                response.all_extension_numbers_response.base_type_name = message.full_name
                response.all_extension_numbers_response.extension_number.extend(numbers)
            else:
                response.error_response.error_code = Status.INVALID_ARGUMENT
                response.error_response.error_message = "no request set"
        except KeyError:
            response.ClearField("file_descriptor_response")
            response.error_response.error_code = Status.NOT_FOUND
            response.error_response.error_message = "not found"
        return response

    async def info(self, requests: AsyncIterator[bytes], context: CallContext) -> AsyncIterator[bytes]:
        """``ServerReflectionInfo``: one response per request, in order."""
        async for data in requests:
            request = _parse(reflection_pb2.ServerReflectionRequest, data)
            yield self.answer(request).SerializeToString()


def limits_of(settings: ServerSettings) -> Limits:
    """The HTTP/2 server's limits from the server settings (connections capped at half the fd limit)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    connections = settings.grpc_max_connections
    if soft != resource.RLIM_INFINITY:
        connections = max(1, min(connections, soft // 2))
    return Limits(
        max_message_bytes=settings.body_limit,
        max_buffered_bytes=max(settings.grpc_connection_buffer_bytes, settings.body_limit + (64 << 10)),
        max_worker_buffered_bytes=settings.grpc_worker_buffer_bytes,
        max_concurrent_streams=settings.grpc_max_streams_per_connection,
        max_connections=connections,
        max_continuation_frames=settings.grpc_max_continuation_frames,
        control_frames_per_second=settings.grpc_max_control_frames_per_second,
        resets_per_second=settings.grpc_max_resets_per_second,
        handshake_timeout=settings.grpc_handshake_timeout,
        idle_timeout=settings.grpc_idle_timeout,
        stall_timeout=settings.grpc_stall_timeout,
    )


class H2Engine:
    """Every Ladle gRPC service on the built-in HTTP/2 server, and the task keeping health current."""

    def __init__(self, core: ServerCore) -> None:
        self.core = core
        self.services = Services(core)
        settings = core.settings
        names = [SERVING, LISTEN, HEALTH]
        self.health = HealthService(["", SERVING, LISTEN])
        methods: dict[str, Method] = {
            f"/{SERVING}/GetFeastServingInfo": Method.unary(
                self._guarded(f"/{SERVING}/GetFeastServingInfo", self._serving_info)
            ),
            f"/{SERVING}/GetOnlineFeatures": Method.unary(self._online(f"/{SERVING}/GetOnlineFeatures")),
            f"/{LISTEN}/GetOnlineFeatures": Method.unary(self._online(f"/{LISTEN}/GetOnlineFeatures")),
            f"/{LISTEN}/Push": Method.unary(self._write(f"/{LISTEN}/Push", listen_pb.PushRequest, self.services.push)),
            f"/{LISTEN}/WriteToOnlineStore": Method.unary(
                self._write(f"/{LISTEN}/WriteToOnlineStore", listen_pb.WriteToOnlineStoreRequest, self.services.write)
            ),
            f"/{HEALTH}/Check": Method.unary(self.health.check),
            f"/{HEALTH}/Watch": Method.server_stream(self.health.watch),
        }
        if settings.grpc_reflection:
            names += list(REFLECTION_NAMES)
            reflection = ReflectionService(names)
            info = reflection.info if core.is_public("reflection") else self._guarded_stream(reflection.info)
            for name in REFLECTION_NAMES:
                methods[f"/{name}/ServerReflectionInfo"] = Method.bidi(info)
        self.server = H2GrpcServer(methods, limits_of(settings))
        self._watch: asyncio.Task[None] | None = None
        self.port = 0

    def _guarded(
        self, endpoint: str, handler: Callable[[bytes, CallContext], bytes]
    ) -> Callable[[bytes, CallContext], bytes | Awaitable[bytes]]:
        """``handler`` behind the auth check (nothing added under ``no_auth``)."""
        if self.core.auth is None:
            return handler
        services = self.services

        def guarded(data: bytes, context: CallContext) -> bytes | Awaitable[bytes]:
            started = time.perf_counter()
            try:
                known = services.quick(context.metadata)
            except Exception as exc:
                raise _grpc_error(endpoint, exc, started) from None
            return handler(data, context) if known is not None else checked(data, context, started)

        async def checked(data: bytes, context: CallContext, started: float) -> bytes:
            try:
                await services.principal(context.metadata)
            except Exception as exc:
                raise _grpc_error(endpoint, exc, started) from None
            return handler(data, context)

        return guarded

    def _guarded_stream(
        self, handler: Callable[[AsyncIterator[bytes], CallContext], AsyncIterator[bytes]]
    ) -> Callable[[AsyncIterator[bytes], CallContext], AsyncIterator[bytes]]:
        services = self.services

        async def guarded(requests: AsyncIterator[bytes], context: CallContext) -> AsyncIterator[bytes]:
            try:
                await services.principal(context.metadata)
            except Exception as exc:
                raise _grpc_error("ServerReflectionInfo", exc, time.perf_counter()) from None
            async for answer in handler(requests, context):
                yield answer

        return guarded

    def _serving_info(self, data: bytes, context: CallContext) -> bytes:
        return serving_pb.GetFeastServingInfoResponse(version=ladle.__version__).SerializeToString()

    def _online(self, endpoint: str) -> Callable[[bytes, CallContext], bytes | Awaitable[bytes]]:
        services = self.services
        offload = self.core.settings.offload_entities
        auth = self.core.auth is not None
        quick = services.quick

        def handler(data: bytes, context: CallContext) -> bytes | Awaitable[bytes]:
            started = time.perf_counter()
            try:
                principal = quick(context.metadata) if auth else ANONYMOUS
                request = services.parse_online(
                    _parse(serving_pb.GetOnlineFeaturesRequest, data), context.metadata.get("x-request-id")
                )
                if request.request_id is not None:
                    context.response_headers = [("x-request-id", request.request_id)]
                if principal is None or request.rows > offload:
                    return offloaded(request, principal, context, started)
                answer, variant = services.read_with_variant(request, principal)
            except Exception as exc:
                raise _grpc_error(endpoint, exc, started) from None
            if variant is not None:
                context.response_headers = [*(context.response_headers or ()), ("ladle-variant", variant)]
            metrics.observe_request(endpoint, "grpc", "OK", time.perf_counter() - started)
            return answer

        async def offloaded(request: Any, principal: Principal | None, context: CallContext, started: float) -> bytes:
            try:
                if principal is None:  # a token not seen before: checked in a thread
                    principal = await services.principal(context.metadata)
                loop = asyncio.get_running_loop()
                answer, variant = await loop.run_in_executor(None, services.read_with_variant, request, principal)
            except Exception as exc:
                raise _grpc_error(endpoint, exc, started) from None
            if variant is not None:
                context.response_headers = [*(context.response_headers or ()), ("ladle-variant", variant)]
            metrics.observe_request(endpoint, "grpc", "OK", time.perf_counter() - started)
            return answer

        return handler

    def _write(
        self, endpoint: str, message_class: Any, work: Callable[[Any, Principal], Awaitable[Any]]
    ) -> Callable[[bytes, CallContext], Awaitable[bytes]]:
        principal_of = self.services.principal

        async def handler(data: bytes, context: CallContext) -> bytes:
            started = time.perf_counter()
            try:
                principal = await principal_of(context.metadata)
                response = await work(_parse(message_class, data), principal)
            except Exception as exc:
                raise _grpc_error(endpoint, exc, started) from None
            metrics.observe_request(endpoint, "grpc", "OK", time.perf_counter() - started)
            return bytes(response.SerializeToString())

        return handler

    async def start(self, host: str, port: int, *, reuse_port: bool = False, ssl: SSLContext | None = None) -> int:
        """Bind and serve (TLS with ``ssl``, which must offer ALPN ``h2``); returns the bound port."""
        sock = reuseport_socket(host, port, "gRPC", reuse_port=reuse_port)
        self.port = await self.server.start(sock, ssl=ssl)
        self._watch = await watch_readiness(self.core, self._set_serving)
        return self.port

    async def _set_serving(self, ready: bool) -> None:
        serving = health_pb2.HealthCheckResponse.SERVING
        await self.health.set_all(serving if ready else health_pb2.HealthCheckResponse.NOT_SERVING)

    async def stop(self, grace: float) -> None:
        """Report NOT_SERVING, refuse new calls and let running ones finish within ``grace`` seconds."""
        if self._watch is not None:
            self._watch.cancel()
        await self.health.shutdown()
        await self.server.stop(grace)
