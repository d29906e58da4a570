"""Auth for the W3 bench (``--auth api_key|oidc``): the ``auth:`` section, a token, and for OIDC a loopback IdP.

The OIDC provider is a thread serving discovery and a JWK set over HTTP on loopback; the token is
RS256-signed by its key and valid for an hour, so after the first request the server answers it
from its verified-token cache, as it would a client reusing its token.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

AUTH_KINDS = ("none", "api_key", "oidc")


def _serve_oidc() -> tuple[dict[str, Any], str, Callable[[], None]]:
    import jwt
    from cryptography.hazmat.primitives.asymmetric import rsa
    from jwt.algorithms import RSAAlgorithm

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(RSAAlgorithm.to_jwk(key.public_key())) | {"kid": "bench", "use": "sig", "alg": "RS256"}
    documents: dict[str, bytes] = {}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            body = documents.get(self.path)
            self.send_response(200 if body else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    issuer = f"http://127.0.0.1:{server.server_address[1]}"
    discovery = {"issuer": issuer, "jwks_uri": f"{issuer}/jwks"}
    documents["/.well-known/openid-configuration"] = json.dumps(discovery).encode()
    documents["/jwks"] = json.dumps({"keys": [jwk]}).encode()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    now = int(time.time())
    claims = {"iss": issuer, "aud": "ladle", "sub": "bench", "iat": now, "exp": now + 3600}
    token = jwt.encode(claims, key, algorithm="RS256", headers={"kid": "bench"})
    section = {"type": "oidc", "auth_discovery_url": f"{issuer}/.well-known/openid-configuration", "client_id": "ladle"}

    def stop() -> None:
        server.shutdown()
        server.server_close()

    return section, token, stop


def configure(repo: Path, kind: str) -> tuple[str | None, Callable[[], None]]:
    """Add the ``auth:`` section of ``kind`` to the repo's feature_store.yaml; returns (token, cleanup)."""
    if kind == "none":
        return None, lambda: None
    if kind == "api_key":
        from ladle.security.api_keys import hash_key, new_key

        token = new_key()
        section: dict[str, Any] = {"type": "api_key", "keys": [{"name": "bench", "sha256": hash_key(token)}]}
        stop: Callable[[], None] = lambda: None  # noqa: E731
    else:
        section, token, stop = _serve_oidc()
    yaml_file = repo / "feature_store.yaml"
    config = yaml.safe_load(yaml_file.read_text())
    config["auth"] = section
    yaml_file.write_text(yaml.safe_dump(config))
    return token, stop
