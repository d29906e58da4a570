"""The UI's ASGI app: the HTML shell, its packaged assets and the JSON API, all read-only (GET/HEAD).

Mounted by the feature server under ``/ui`` (``RestApp`` hands it every path below the prefix) or
served alone by ``ladle ui``. The shell and the assets hold no data and are open, so the page can
show its sign-in form; every ``/ui/api/`` call authenticates with the API's own authenticator
(``Authorization: Bearer <API key or token>``, which the page keeps in sessionStorage) and
answers with what the registry's permissions let the caller describe.

>>> app = UiApp(FeatureStore(repo_path="feature_repo"), http_status=lambda exc: status_of(exc).http)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from functools import cache
from importlib import resources
from typing import Any
from urllib.parse import parse_qsl, unquote

import orjson

from ladle.errors import AuthenticationError, LadleError
from ladle.security.auth import Authenticator, authenticator_for
from ladle.security.principal import ANONYMOUS, Principal
from ladle.store import FeatureStore
from ladle.ui.api import Query, UiApi

log = logging.getLogger(__name__)

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
PREFIX = "/ui"

#: Files in ``static/`` and their content types (anything else under /ui/static/ is a 404).
ASSETS: dict[str, bytes] = {
    "app.js": b"text/javascript; charset=utf-8",
    "pages.js": b"text/javascript; charset=utf-8",
    "monitor.js": b"text/javascript; charset=utf-8",
    "charts.js": b"text/javascript; charset=utf-8",
    "lineage.js": b"text/javascript; charset=utf-8",
    "dom.js": b"text/javascript; charset=utf-8",
    "style.css": b"text/css; charset=utf-8",
    "favicon.svg": b"image/svg+xml",
}
# Everything comes from this origin: no CDN, no inline script.
_HEADERS = [
    (b"content-security-policy", b"default-src 'self'; img-src 'self' data:; frame-ancestors 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]
Handler = Callable[[UiApi, Principal, list[str], Query], dict[str, Any]]


def _routes() -> dict[tuple[str, int], Handler]:
    """(first segment, number of segments) → handler."""
    return {
        ("session", 1): lambda api, p, s, q: api.session(p),
        ("overview", 1): lambda api, p, s, q: api.overview(p),
        ("projects", 1): lambda api, p, s, q: api.projects(p),
        ("objects", 2): lambda api, p, s, q: api.objects(p, s[1], q),
        ("objects", 3): lambda api, p, s, q: api.detail(p, s[1], s[2]),
        ("versions", 3): lambda api, p, s, q: api.versions(p, s[1], s[2]),
        ("diff", 3): lambda api, p, s, q: api.diff(p, s[1], s[2], q),
        ("search", 1): lambda api, p, s, q: api.search(p, q),
        ("lineage", 1): lambda api, p, s, q: api.lineage(p, q),
        ("jobs", 1): lambda api, p, s, q: api.jobs(p, q),
        ("freshness", 1): lambda api, p, s, q: api.freshness(p),
        ("baselines", 1): lambda api, p, s, q: api.baselines(p),
        ("reports", 1): lambda api, p, s, q: api.reports(p, q),
        ("reports", 3): lambda api, p, s, q: api.report(p, s[1], s[2], q),
    }


@cache
def asset(name: str) -> tuple[bytes, bytes] | None:
    """``(body, content type)`` of a packaged asset, or None."""
    content_type = ASSETS.get(name)
    if content_type is None:
        return None
    return resources.files("ladle.ui").joinpath("static", name).read_bytes(), content_type


@cache
def shell(prefix: str) -> bytes:
    """The one HTML page; the script finds the API under ``data-prefix``."""
    page = resources.files("ladle.ui").joinpath("static", "index.html").read_bytes()
    return page.replace(b"{{prefix}}", prefix.encode())


class UiApp:
    """The web UI over one store. ``auth``: the server's authenticator (None: built from the store's config)."""

    def __init__(
        self,
        store: FeatureStore,
        auth: Authenticator | None = None,
        prefix: str = PREFIX,
        *,
        http_status: Callable[[BaseException], int],
    ) -> None:
        """``http_status`` maps an error to its HTTP status (the server's mapping: passed in, so the UI
        does not import the server that mounts it)."""
        self.store = store
        self._http_status = http_status
        if auth is None:
            built = authenticator_for(store.config.auth, str(store.repo_path))
            auth = built if built.enabled else None
        self.auth = auth
        self.prefix = prefix.rstrip("/")
        auth_type = "no_auth" if auth is None else str(auth.config.type)
        self.api = UiApi(store, auth_type)
        self._routes = _routes()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":  # standalone under uvicorn
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    self.api.close()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        status, body, content_type, extra = await self.handle(scope)
        headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode()), *_HEADERS, *extra]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})

    async def handle(self, scope: Scope) -> tuple[int, bytes, bytes, list[tuple[bytes, bytes]]]:
        """Status, body, content type and extra headers for one request."""
        path: str = scope["path"]
        if scope["method"] not in ("GET", "HEAD"):
            return 405, b'{"detail":"the UI is read-only: GET only"}', b"application/json", [(b"allow", b"GET, HEAD")]
        rest = path[len(self.prefix) :] if path.startswith(self.prefix) else None
        if rest is None:
            return _json(404, {"detail": "Not Found"})
        if rest in ("", "/", "/index.html"):
            return 200, shell(self.prefix), b"text/html; charset=utf-8", [(b"cache-control", b"no-cache")]
        if rest.startswith("/static/"):
            found = asset(rest.removeprefix("/static/"))
            if found is None:
                return _json(404, {"detail": f"no asset {rest}"})
            return 200, found[0], found[1], [(b"cache-control", b"no-cache")]
        if rest.startswith("/api/"):
            return await self._api(scope, [unquote(s) for s in rest.removeprefix("/api/").split("/")])
        return _json(404, {"detail": "Not Found"})

    async def _api(self, scope: Scope, segments: list[str]) -> tuple[int, bytes, bytes, list[tuple[bytes, bytes]]]:
        handler = self._routes.get((segments[0], len(segments)))
        if handler is None:
            return _json(404, {"detail": f"no UI endpoint /{'/'.join(segments)}"})
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        loop = asyncio.get_running_loop()
        try:
            principal = await self._caller(scope)
            answer = await loop.run_in_executor(None, handler, self.api, principal, segments, query)
        except Exception as exc:  # the boundary: every failure is a status and one readable message
            return _error(exc, self._http_status)
        return 200, orjson.dumps(answer, option=orjson.OPT_NON_STR_KEYS), b"application/json", [
            (b"cache-control", b"no-store")
        ]  # fmt: skip

    async def _caller(self, scope: Scope) -> Principal:
        if self.auth is None:
            return ANONYMOUS
        authorization = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"authorization"), None)
        found = self.auth.quick(authorization)
        if found is None:
            found = await asyncio.get_running_loop().run_in_executor(None, self.auth.authenticate, authorization)
        return found


def _json(status: int, body: dict[str, Any]) -> tuple[int, bytes, bytes, list[tuple[bytes, bytes]]]:
    return status, orjson.dumps(body), b"application/json", [(b"cache-control", b"no-store")]


def _error(
    exc: Exception, http_status: Callable[[BaseException], int]
) -> tuple[int, bytes, bytes, list[tuple[bytes, bytes]]]:
    if isinstance(exc, LadleError):
        status = http_status(exc)
    else:
        status = 500
        log.error("UI request failed", exc_info=exc)
    extra = [(b"www-authenticate", b"Bearer")] if isinstance(exc, AuthenticationError) else []
    code, body, content_type, headers = _json(status, {"detail": str(exc) if status < 500 or
                                                       isinstance(exc, LadleError) else "internal error"})  # fmt: skip
    return code, body, content_type, headers + extra
