"""``RemoteOnlineStore``: a feature server's REST API as the SDK's online store (httpx, pooled).

Sync and async calls share :mod:`ladle.online.remote.wire` (bodies and answers); only the transport
differs (``httpx.Client`` / ``httpx.AsyncClient``, each made on first use and kept alive).
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar

import orjson

from ladle.config import RepoConfig, StrictModel
from ladle.definitions import FeatureService, FeatureView
from ladle.errors import BackendUnavailableError, ConfigError
from ladle.online.base import ReadRequest, ViewRows
from ladle.online.remote.config import RemoteOnlineStoreConfig
from ladle.online.remote.wire import Answer, error_of, online_body, online_response
from ladle.types import FieldStatus

if TYPE_CHECKING:
    import httpx
    import pyarrow as pa

_NOT_FOUND = int(FieldStatus.NOT_FOUND)
_JSON = {"Content-Type": "application/json", "Accept": "application/json"}


class RemoteOnlineStore:
    """Online reads (and writes) through a Ladle or Feast feature server (see the package docstring)."""

    config_class: ClassVar[type[StrictModel]] = RemoteOnlineStoreConfig
    #: FeatureStore forwards whole get_online_features requests to stores that say so.
    forwards_requests: ClassVar[bool] = True

    def __init__(self, config: RepoConfig) -> None:
        cfg = config.online_store
        if not isinstance(cfg, RemoteOnlineStoreConfig):
            cfg = RemoteOnlineStoreConfig.model_validate(dict(cfg or {}))
        if not cfg.path.startswith(("http://", "https://")):
            raise ConfigError(f"online_store.path: {cfg.path!r} must be an http:// or https:// URL")
        self.config = cfg
        self.url = cfg.path.rstrip("/")
        #: Returns the bearer token to send (or None); FeatureStore sets it from its credentials.
        self.token_source: Callable[[], str | None] = lambda: None
        self._client: httpx.Client | None = None
        self._async: httpx.AsyncClient | None = None
        self._lock = threading.Lock()

    # -- transport ----------------------------------------------------------------------------
    def _headers(self) -> dict[str, str]:
        token = self.token_source()
        return {**_JSON, "Authorization": f"Bearer {token}"} if token else dict(_JSON)

    def _transport_options(self) -> dict[str, Any]:
        """TLS, pool and retries: a custom transport ignores the client's own ``verify``/``limits``."""
        import httpx

        verify: ssl.SSLContext | bool = self.config.verify
        if self.config.verify and self.config.cert:
            verify = ssl.create_default_context(cafile=self.config.cert)
        size = self.config.connection_pool_size
        return {
            "verify": verify,
            "limits": httpx.Limits(max_connections=size, max_keepalive_connections=size),
            "retries": self.config.connection_retries,
        }

    def _sync(self) -> httpx.Client:
        if self._client is None:
            import httpx

            with self._lock:
                if self._client is None:
                    transport = httpx.HTTPTransport(**self._transport_options())
                    self._client = httpx.Client(
                        transport=transport, base_url=self.url, timeout=self.config.timeout_seconds
                    )
        return self._client

    def _post(self, path: str, body: bytes) -> bytes:
        import httpx

        try:
            reply = self._sync().post(path, content=body, headers=self._headers())
        except httpx.HTTPError as exc:
            raise BackendUnavailableError(f"cannot reach the feature server at {self.url}: {exc}") from exc
        if reply.status_code >= 400:
            raise error_of(reply.status_code, reply.content, self.url + path)
        return reply.content

    async def _post_async(self, path: str, body: bytes) -> bytes:
        import httpx

        if self._async is None:
            transport = httpx.AsyncHTTPTransport(**self._transport_options())
            self._async = httpx.AsyncClient(transport=transport, base_url=self.url, timeout=self.config.timeout_seconds)
        try:
            reply = await self._async.post(path, content=body, headers=self._headers())
        except httpx.HTTPError as exc:
            raise BackendUnavailableError(f"cannot reach the feature server at {self.url}: {exc}") from exc
        if reply.status_code >= 400:
            raise error_of(reply.status_code, reply.content, self.url + path)
        return reply.content

    # -- whole requests (what FeatureStore forwards) --------------------------------------------
    def get_online_features(
        self, features: Sequence[str] | FeatureService | str, entity_rows: Any, full_feature_names: bool = False
    ) -> Answer:
        """One ``/get-online-features`` round trip; the server's answer as columns."""
        body = online_body(features, entity_rows, full_feature_names)
        return online_response(self._post("/get-online-features", body))

    async def get_online_features_async(
        self, features: Sequence[str] | FeatureService | str, entity_rows: Any, full_feature_names: bool = False
    ) -> Answer:
        """:meth:`get_online_features` without blocking the event loop (httpx.AsyncClient)."""
        body = online_body(features, entity_rows, full_feature_names)
        return online_response(await self._post_async("/get-online-features", body))

    def push(self, push_source_name: str, columns: Mapping[str, Sequence[Any]], to: str = "online") -> None:
        """``POST /push`` (timestamps as ISO 8601 text)."""
        self._post("/push", _push_body(push_source_name, columns, to))

    async def push_async(self, push_source_name: str, columns: Mapping[str, Sequence[Any]], to: str = "online") -> None:
        """:meth:`push` without blocking the event loop."""
        await self._post_async("/push", _push_body(push_source_name, columns, to))

    # -- the OnlineStore protocol ---------------------------------------------------------------
    def read(self, project: str, requests: Sequence[ReadRequest]) -> list[ViewRows]:
        """One request per view (full feature names), NOT_FOUND rows as missing."""
        out = []
        for request in requests:
            n = len(next(iter(request.keys.values()), []))
            if not request.features:
                out.append(ViewRows([None] * n, {}))
                continue
            refs = [f"{request.view.name}:{f}" for f in request.features]
            keys = {k: list(v) for k, v in request.keys.items()}
            names, values, statuses, stamps = self.get_online_features(refs, keys, True)
            index = {name: i for i, name in enumerate(names)}
            first = index[f"{request.view.name}__{request.features[0]}"]
            event_ts: list[int | None] = [
                None if s == _NOT_FOUND else t for s, t in zip(statuses[first], stamps[first], strict=True)
            ]
            out.append(ViewRows(event_ts, {f: values[index[f"{request.view.name}__{f}"]] for f in request.features}))
        return out

    def write(self, project: str, view: FeatureView, rows: pa.Table) -> int:
        """``POST /write-to-online-store`` (the server checks and keeps the newest rows)."""
        columns = {name: [_jsonable(v) for v in rows.column(name).to_pylist()] for name in rows.column_names}
        body = orjson.dumps({"feature_view_name": view.name, "df": columns, "allow_registry_cache": False})
        self._post("/write-to-online-store", body)
        written: int = rows.num_rows
        return written

    def update(self, project: str, keep: Sequence[FeatureView], delete: Sequence[FeatureView]) -> None:
        """Nothing: the server's own online store is prepared by applies on the server's side."""

    def delete_view(self, project: str, view: FeatureView) -> None:
        """Nothing (as Feast's remote store): the server owns its data."""

    def teardown(self, project: str, views: Sequence[FeatureView]) -> None:
        """Nothing (as Feast's remote store): the server owns its data."""

    def ping(self) -> None:
        """``GET /health``; BackendUnavailableError if the server does not answer 200."""
        import httpx

        try:
            reply = self._sync().get("/health", headers=self._headers())
        except httpx.HTTPError as exc:
            raise BackendUnavailableError(f"cannot reach the feature server at {self.url}: {exc}") from exc
        if reply.status_code != 200:
            raise error_of(reply.status_code, reply.content, self.url + "/health")

    def close(self) -> None:
        """Close the sync client (the async one closes with :meth:`aclose`)."""
        if self._client is not None:
            self._client.close()
            self._client = None

    async def aclose(self) -> None:
        """Close the async client."""
        if self._async is not None:
            await self._async.aclose()
            self._async = None


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()
    return value


def _push_body(name: str, columns: Mapping[str, Sequence[Any]], to: str) -> bytes:
    df = {k: [_jsonable(v) for v in (c.tolist() if hasattr(c, "tolist") else c)] for k, c in columns.items()}
    return orjson.dumps({"push_source_name": name, "df": df, "to": to})
