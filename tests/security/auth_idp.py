"""A real OpenID provider on loopback for the auth tests: discovery, JWKS, a token endpoint.

Keys are generated with cryptography and tokens signed with PyJWT; the provider can rotate its
keys and counts JWKS fetches, so tests can see caching and rate-limited refetches happen.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

CLIENT_ID = "ladle"
CLIENT_SECRET = "s3cret"


class IdP:
    """An identity provider serving ``/.well-known/openid-configuration``, ``/jwks`` and ``/token``."""

    def __init__(self) -> None:
        self.keys: dict[str, Any] = {}
        self.published: list[str] = []
        self.jwks_fetches = 0
        self.requests = 0
        self.token_grants = 0
        self.add_key("k1")
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.port = self._server.server_address[1]
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.discovery_url = f"{self.issuer}/.well-known/openid-configuration"
        self.jwks_url = f"{self.issuer}/jwks"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()

    def add_key(self, kid: str, kind: str = "rsa", publish: bool = True) -> None:
        """Generate a key; publish it in the JWK set unless told not to."""
        if kind == "rsa":
            self.keys[kid] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        else:
            self.keys[kid] = ec.generate_private_key(ec.SECP256R1())
        if publish:
            self.published.append(kid)

    def rotate(self, new_kid: str) -> None:
        """Publish a new key and retire every other one."""
        self.add_key(new_kid, publish=False)
        self.published = [new_kid]

    def jwks(self) -> dict[str, Any]:
        """The published JWK set."""
        out = []
        for kid in self.published:
            key = self.keys[kid].public_key()
            if isinstance(key, rsa.RSAPublicKey):
                jwk = json.loads(RSAAlgorithm.to_jwk(key))
                jwk["alg"] = "RS256"
            else:
                jwk = json.loads(ECAlgorithm.to_jwk(key))
                jwk["alg"] = "ES256"
            jwk |= {"kid": kid, "use": "sig"}
            out.append(jwk)
        return {"keys": out}

    def claims(self, **overrides: Any) -> dict[str, Any]:
        """Valid claims for this issuer and audience, with ``overrides`` applied (None deletes a claim)."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": CLIENT_ID,
            "sub": "user-123",
            "preferred_username": "alice",
            "iat": now,
            "exp": now + 300,
            "resource_access": {CLIENT_ID: {"roles": ["reader"]}},
            "roles": ["global-role"],
            "groups": ["analysts"],
        }
        for name, value in overrides.items():
            if value is None:
                claims.pop(name, None)
            else:
                claims[name] = value
        return claims

    def token(self, kid: str = "k1", alg: str | None = None, **overrides: Any) -> str:
        """A token signed by key ``kid``."""
        key = self.keys[kid]
        alg = alg or ("RS256" if isinstance(key, rsa.RSAPrivateKey) else "ES256")
        return jwt.encode(self.claims(**overrides), key, algorithm=alg, headers={"kid": kid})

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        idp = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _json(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                idp.requests += 1
                if self.path == "/.well-known/openid-configuration":
                    self._json(
                        200,
                        {
                            "issuer": idp.issuer,
                            "jwks_uri": idp.jwks_url,
                            "token_endpoint": f"{idp.issuer}/token",
                        },
                    )
                elif self.path == "/jwks":
                    idp.jwks_fetches += 1
                    self._json(200, idp.jwks())
                else:
                    self._json(404, {"error": "not found"})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                form = urllib.parse.parse_qs(self.rfile.read(length).decode())
                good = form.get("client_id") == [CLIENT_ID] and form.get("client_secret") == [CLIENT_SECRET]
                if self.path != "/token" or form.get("grant_type") != ["client_credentials"] or not good:
                    self._json(401, {"error": "invalid_client"})
                    return
                idp.token_grants += 1
                token = idp.token(preferred_username=None, azp="service-bot", sub="svc")
                self._json(200, {"access_token": token, "token_type": "Bearer", "expires_in": 300})

        return Handler
