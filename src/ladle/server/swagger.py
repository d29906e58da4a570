"""The ``/docs`` page: Swagger UI over ``/openapi.json``, its assets served from the package.

Nothing comes from a CDN, so the page works offline and behind a firewall. The assets are the
``swagger-ui-dist`` files in ``static/swagger-ui`` (Apache-2.0; licence, notice and the bundled
libraries' licences beside them; refresh with ``scripts/vendor_swagger_ui.sh VERSION``). The
well-kept PyPI bundle of them ships Swagger UI 4, which cannot render an OpenAPI 3.1 document.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

PREFIX = "/docs/"

#: URL under /docs/ → (file in static/swagger-ui, or None for the page's own script; content type).
ASSETS: dict[str, tuple[str | None, bytes]] = {
    "/docs/swagger-ui.css": ("swagger-ui.css", b"text/css; charset=utf-8"),
    "/docs/swagger-ui-bundle.js": ("swagger-ui-bundle.js", b"text/javascript; charset=utf-8"),
    "/docs/swagger-initializer.js": (None, b"text/javascript; charset=utf-8"),
    "/docs/LICENSE": ("LICENSE", b"text/plain; charset=utf-8"),
}

# A separate script, not an inline one, so the page also works under a Content-Security-Policy
# that allows only 'self'. validatorUrl null: the UI must not send the document to a public validator.
_INITIALIZER = b"""const root = document.getElementById("swagger-ui");
window.ui = SwaggerUIBundle({url: root.dataset.url, domNode: root, validatorUrl: null});
"""

SWAGGER_HTML = b"""<!doctype html>
<html><head><meta charset="utf-8"><title>Ladle feature server</title>
<link rel="stylesheet" href="/docs/swagger-ui.css"></head>
<body><div id="swagger-ui" data-url="/openapi.json"></div>
<script src="/docs/swagger-ui-bundle.js"></script>
<script src="/docs/swagger-initializer.js"></script>
</body></html>
"""


@cache
def asset(path: str) -> tuple[bytes, bytes] | None:
    """``(body, content type)`` of the asset at URL ``path``; ``None`` if there is none."""
    entry = ASSETS.get(path)
    if entry is None:
        return None
    name, content_type = entry
    if name is None:
        return _INITIALIZER, content_type
    body = resources.files("ladle.server").joinpath("static", "swagger-ui", name).read_bytes()
    return body, content_type
