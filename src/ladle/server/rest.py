"""The REST API: a raw ASGI app speaking Feast's JSON (no framework on the request path).

Routes are a dict lookup; bodies are read with a size limit and parsed with orjson whatever
the Content-Type (Feast clients before 0.64 send none); small reads run inline on the event loop
(one store round trip, well under a millisecond), larger ones and every write in a thread.

>>> app = create_app(FeatureStore(repo_path="feature_repo"))   # then: uvicorn, or httpx.ASGITransport
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

import orjson

from ladle.errors import RequestError, RequestTooLargeError
from ladle.retrieval.response import OnlineResponse
from ladle.retrieval.variants import variant_label
from ladle.security.principal import ANONYMOUS, Principal
from ladle.server import codec, health, metrics, swagger
from ladle.server.core import OnlineRequest, ServerCore, parse_timestamp
from ladle.server.jobs import MaterializationJobs
from ladle.server.openapi import OPENAPI
from ladle.server.settings import ServerSettings
from ladle.server.status import error_body, status_of
from ladle.store import FeatureStore
from ladle.ui import UiApp

log = logging.getLogger(__name__)

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
JSON = b"application/json"
Header = tuple[bytes, bytes]
#: The scope key holding the authenticated caller (absent under ``no_auth``).
PRINCIPAL = "ladle.principal"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Response:
    """A status, a body and its content type."""

    __slots__ = ("body", "content_type", "headers", "status")

    def __init__(
        self, status: int, body: bytes = b"", content_type: bytes = JSON, headers: tuple[Header, ...] = ()
    ) -> None:
        self.status = status
        self.body = body
        self.content_type = content_type
        self.headers = headers  # extra response headers (X-Request-ID, X-Ladle-Variant)


class ClientGone(Exception):
    """The client disconnected before sending the whole body."""


Handler = Callable[[Scope, bytes], Awaitable[Response]]


def _object(body: bytes) -> dict[str, Any]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise RequestError(f"the request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise RequestError(f"the request body must be a JSON object, got {type(data).__name__}")
    return data


def _field(data: dict[str, Any], name: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
    value = data.get(name, default)
    if value is None and default is None:
        return None
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        expected = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise RequestError(f"'{name}' must be a {expected}, got {value!r}")
    return value


def _string_list(data: dict[str, Any], name: str) -> list[str] | None:
    value = _field(data, name, list)
    if value is None:
        return None
    if not set(map(type, value)) <= {str}:  # orjson makes exact str objects, never subclasses
        raise RequestError(f"'{name}' must be a list of strings, got {value!r}")
    strings: list[str] = value
    return strings


def parse_online_request(body: bytes, request_id: str | None = None) -> OnlineRequest:
    """Validate a ``/get-online-features`` body (unknown fields are ignored, as Feast does)."""
    data = _object(body)
    service = _field(data, "feature_service", str)
    features = None if service is not None else _string_list(data, "features")
    if service is None and features is None:
        raise RequestError("give 'features' (a list of 'view:feature') or 'feature_service' (a name)")
    entities = _field(data, "entities", dict)
    if entities is None:
        raise RequestError("'entities' is required: an object mapping each join key to a list of values")
    for key, values in entities.items():
        if not isinstance(values, list):
            raise RequestError(f"entities['{key}'] must be a list of values (one per row), got {values!r}")
    context = _field(data, "request_context", dict)  # the Go server's field; Python Feast sends these in entities
    for key, values in (context or {}).items():
        if not isinstance(values, list):
            raise RequestError(f"request_context['{key}'] must be a list of values (one per row), got {values!r}")
        entities.setdefault(key, values)
    full = _field(data, "full_feature_names", bool, False)
    return OnlineRequest(tuple(features) if features is not None else None, service, entities, full, request_id)


class RestApp:
    """The ASGI application. Build it with :func:`create_app`."""

    def __init__(self, core: ServerCore) -> None:
        self.core = core
        self.settings = core.settings
        self.jobs = MaterializationJobs(core)
        self._routes: dict[str, dict[str, Handler]] = {
            "/get-online-features": {"POST": self._get_online_features},
            "/get-historical-features": {"POST": self._get_historical_features},
            "/push": {"POST": self._push},
            "/write-to-online-store": {"POST": self._write},
            "/materialize": {"POST": self._materialize},
            "/materialize-incremental": {"POST": self._materialize},
            "/health": {"GET": self._health},
            "/ready": {"GET": self._ready},
            "/docs": {"GET": self._docs},
            "/openapi.json": {"GET": self._openapi},
        }
        if self.settings.metrics:
            self._routes["/metrics"] = {"GET": self._metrics}
        self._openapi_body = orjson.dumps(OPENAPI)
        # The web UI under /ui: read-only, its API calls checked by the same authenticator (docs/ui.md).
        self._ui = UiApp(core.store, core.auth, http_status=lambda exc: status_of(exc).http)
        self._auth = core.auth
        # Open to anonymous callers while auth is on: health, /ready's status (its details are checked),
        # and what auth.public names.
        self._open = {"/health", "/ready"}
        if core.is_public("metrics"):
            self._open.add("/metrics")
        if core.is_public("docs"):
            self._open |= {"/docs", "/openapi.json", *swagger.ASSETS}

    @property
    def routes(self) -> list[str]:
        """Every path served."""
        return list(self._routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        path = scope["path"]
        if path == "/ui" or path.startswith("/ui/"):
            await self._ui(scope, receive, send)
            return
        if self._auth is not None and path not in self._open:
            try:
                scope[PRINCIPAL] = await self._authenticate(scope)
            except Exception as exc:  # 401, or 503 when the identity provider cannot be reached
                response = self._error(exc, path)
                await _send(send, response)
                if path in self._routes:  # never a label per made-up path
                    metrics.observe_request(path, "rest", str(response.status), time.perf_counter() - started)
                return
        methods = self._routes.get(path)
        if methods is None:
            await _send(send, _asset(path, scope["method"]))
            return
        handler = methods.get(scope["method"])
        if handler is None:
            await _send(send, Response(405, b'{"detail":"Method Not Allowed"}'))
            return
        try:
            body = await self._read_body(scope, receive) if scope["method"] == "POST" else b""
            response = await handler(scope, body)
        except ClientGone:
            return
        # The boundary: every failure becomes Feast's error shape, never a dropped connection.
        except Exception as exc:
            response = self._error(exc, path)
        await _send(send, response)
        if path != "/metrics":
            metrics.observe_request(path, "rest", str(response.status), time.perf_counter() - started)

    async def _authenticate(self, scope: Scope) -> Principal:
        """The caller (a token not seen before is checked in a thread: it may fetch the issuer's keys)."""
        authorization = api_key = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value.decode("latin-1")
                break
            if name == b"x-api-key":
                api_key = value.decode("latin-1")
        return await self.core.caller(self.core.credential(authorization, api_key))

    def _error(self, exc: Exception, path: str) -> Response:
        status = status_of(exc)
        if status.http >= 500:
            log.error("%s failed: %s", path, exc, exc_info=status.http == 500 and not status.feast_class)
        return Response(status.http, error_body(exc, status))

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes:
        limit = self.settings.body_limit
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                raise RequestTooLargeError(f"request body of {int(value)} bytes is over the limit of {limit} bytes")
        message = await receive()
        body: bytes = message.get("body", b"")
        if len(body) > limit:  # a chunked body has no content-length to check up front
            raise RequestTooLargeError(f"request body is over the limit of {limit} bytes")
        if not message.get("more_body"):
            if message["type"] == "http.disconnect":
                raise ClientGone
            return body
        chunks = [body]
        size = len(body)
        while message.get("more_body"):
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientGone
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise RequestTooLargeError(f"request body is over the limit of {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await asyncio.get_running_loop().run_in_executor(None, self.jobs.close)
                self._ui.api.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # -- handlers ---------------------------------------------------------------------------
    async def _get_online_features(self, scope: Scope, body: bytes) -> Response:
        given = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                given = value.decode("latin-1")
                break
        request = parse_online_request(body)
        rid = self.core.request_id(given, request)
        if rid is not None:
            request = OnlineRequest(request.features, request.feature_service, request.entities,
                                    request.full_feature_names, rid)  # fmt: skip
        headers: tuple[Header, ...] = ((b"x-request-id", rid.encode("latin-1")),) if rid is not None else ()
        if request.rows > self.settings.offload_entities:
            loop = asyncio.get_running_loop()
            response, plan = await loop.run_in_executor(None, self.core.get_online_features, request, _principal(scope))
            body = await loop.run_in_executor(None, codec.online_response_json, response, plan)
            return Response(200, body, headers=(*headers, *_variant_header(response)))
        response, plan = self.core.get_online_features(request, _principal(scope))
        return Response(200, codec.online_response_json(response, plan), headers=(*headers, *_variant_header(response)))

    async def _get_historical_features(self, scope: Scope, body: bytes) -> Response:
        from ladle.offline.remote.wire import ARROW_STREAM
        from ladle.server.historical import historical_answer

        loop = asyncio.get_running_loop()
        answer = await loop.run_in_executor(None, historical_answer, self.core.store, body, _principal(scope))
        return Response(200, answer, ARROW_STREAM)

    async def _push(self, scope: Scope, body: bytes) -> Response:
        data = _object(body)
        source = _field(data, "push_source_name", str)
        if source is None:
            raise RequestError("'push_source_name' is required")
        df = _field(data, "df", dict)
        if df is None:
            raise RequestError("'df' is required: an object mapping column names to lists of values")
        to = _field(data, "to", str, "online")
        await asyncio.get_running_loop().run_in_executor(None, self.core.push, source, df, to, _principal(scope))
        return Response(200)

    async def _write(self, scope: Scope, body: bytes) -> Response:
        data = _object(body)
        view = _field(data, "feature_view_name", str)
        if view is None:
            raise RequestError("'feature_view_name' is required")
        df = _field(data, "df", dict)
        if df is None:
            raise RequestError("'df' is required: an object mapping column names to lists of values")
        await asyncio.get_running_loop().run_in_executor(
            None, self.core.write_to_online_store, view, df, _principal(scope)
        )
        return Response(200, b"null")

    async def _materialize(self, scope: Scope, body: bytes) -> Response:
        data = _object(body)
        views = self.core.views_to_materialize(_string_list(data, "feature_views"), _principal(scope))
        start: datetime | None = None
        if scope["path"] == "/materialize-incremental":
            end = parse_timestamp(data.get("end_ts"), "end_ts")
        elif _field(data, "disable_event_timestamp", bool, False):
            start, end = _EPOCH, datetime.now(UTC)
        else:
            start = parse_timestamp(data.get("start_ts"), "start_ts")
            end = parse_timestamp(data.get("end_ts"), "end_ts")
            if start > end:
                raise RequestError(f"start_ts {start.isoformat()} is after end_ts {end.isoformat()}")
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        run_async = query.get("async", ["false"])[-1].lower() in {"true", "1", "yes"}
        future = self.jobs.submit(views, start, end, _principal(scope))
        if run_async:
            return Response(202, orjson.dumps({"status": "accepted", "feature_views": views}))
        await asyncio.wrap_future(future)
        return Response(200, b"null")

    async def _health(self, scope: Scope, body: bytes) -> Response:
        return Response(200)

    async def _ready(self, scope: Scope, body: bytes) -> Response:
        readiness = await health.check_readiness(self.core.store)
        answer = readiness.to_json()
        if not self.core.is_public("ready"):
            try:  # anonymous callers (probes) get the status; the checks may name hosts and errors
                await self._authenticate(scope)
            except Exception:
                answer = {"status": answer["status"]}
        return Response(200 if readiness.ready else 503, orjson.dumps(answer))

    async def _metrics(self, scope: Scope, body: bytes) -> Response:
        text, content_type = metrics.render()
        return Response(200, text, content_type.encode())

    async def _docs(self, scope: Scope, body: bytes) -> Response:
        return Response(200, swagger.SWAGGER_HTML, b"text/html; charset=utf-8")

    async def _openapi(self, scope: Scope, body: bytes) -> Response:
        return Response(200, self._openapi_body)


def _variant_header(response: OnlineResponse) -> tuple[Header, ...]:
    """``X-Ladle-Variant`` after a split read (:func:`~ladle.retrieval.variants.variant_label`)."""
    if response.variants is None:
        return ()
    return ((b"x-ladle-variant", str(variant_label(response)).encode()),)


def _principal(scope: Scope) -> Principal:
    """The caller the auth check put in ``scope`` (ANONYMOUS under ``no_auth``)."""
    principal: Principal = scope.get(PRINCIPAL, ANONYMOUS)
    return principal


def _asset(path: str, method: str) -> Response:
    """A file of the /docs page, or 404; assets are not routes (the OpenAPI document lists routes)."""
    found = swagger.asset(path)
    if found is None:
        return Response(404, b'{"detail":"Not Found"}')
    if method != "GET":
        return Response(405, b'{"detail":"Method Not Allowed"}')
    return Response(200, *found)


async def _send(send: Send, response: Response) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": response.status,
            "headers": [
                (b"content-type", response.content_type),
                (b"content-length", str(len(response.body)).encode()),
                *response.headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": response.body})


def create_app(store: FeatureStore, settings: ServerSettings | None = None) -> RestApp:
    """The REST ASGI app over ``store``."""
    return RestApp(ServerCore(store, settings or ServerSettings()))
