"""A small client for a running Ladle (or Feast) feature server over REST, sending its credential.

>>> client = RemoteClient("https://features.internal:8080", credential=os.environ["KEY"], ca_file="ca.pem")
>>> client.get_online_features(["commodity_price_features:current_price"],
...                            {"commodity_code": ["crude_oil_wti", "brent"]})
{'commodity_code': ['crude_oil_wti', 'brent'], 'current_price': [78.25, 82.5]}

Every request carries ``Authorization: Bearer <token>``, the token found as the SDK finds it
(:func:`ladle.security.credentials.client_token`: ``credential``, ``LADLE_AUTH_TOKEN``, then the
``auth`` section given). Server errors come back as Ladle's typed errors: 401 →
:class:`~ladle.errors.AuthenticationError`, 403 → :class:`~ladle.errors.PermissionDeniedError`,
other 4xx (unknown views too) → :class:`~ladle.errors.RequestError` with the server's message,
5xx and connection failures → :class:`~ladle.errors.BackendUnavailableError`.
"""

from __future__ import annotations

import ssl
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from ladle.errors import BackendUnavailableError
from ladle.online.remote.wire import error_of


class RemoteClient:
    """Online reads and pushes against a feature server's REST API."""

    def __init__(
        self,
        url: str,
        *,
        credential: str | None = None,
        auth: Mapping[str, Any] | None = None,
        ca_file: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.url = url.rstrip("/")
        self._credential = credential
        self._auth = dict(auth or {})
        self._timeout = timeout
        self._context = ssl.create_default_context(cafile=ca_file) if self.url.startswith("https:") else None

    def _post(self, path: str, payload: Mapping[str, Any]) -> Any:
        from ladle.security.credentials import client_token

        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        token = client_token(self._auth, self._credential)
        if token:
            headers["Authorization"] = f"Bearer {token}"
        request = urllib.request.Request(self.url + path, data=orjson.dumps(payload), headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self._timeout, context=self._context) as response:
                body = response.read()
        except urllib.error.HTTPError as exc:
            raise error_of(exc.code, exc.read()) from None
        except (urllib.error.URLError, OSError) as exc:
            raise BackendUnavailableError(f"cannot reach {self.url}: {getattr(exc, 'reason', exc)}") from None
        return orjson.loads(body) if body else None

    def get_online_features(
        self,
        features: Sequence[str] | str,
        entities: Mapping[str, Sequence[Any]],
        *,
        full_feature_names: bool = False,
    ) -> dict[str, list[Any]]:
        """The latest values as columns (``name -> values``, entity columns first).

        ``features`` is a list of ``view:feature`` references or a feature service name;
        ``entities`` maps each join key to one value per row.
        """
        payload: dict[str, Any] = {"entities": {k: list(v) for k, v in entities.items()}}
        if isinstance(features, str):
            payload["feature_service"] = features
        else:
            payload["features"] = list(features)
        payload["full_feature_names"] = full_feature_names
        answer = self._post("/get-online-features", payload)
        names = answer["metadata"]["feature_names"]
        return {name: result["values"] for name, result in zip(names, answer["results"], strict=True)}

    def push(self, push_source_name: str, columns: Mapping[str, Sequence[Any]], to: str = "online") -> None:
        """Push rows (``column -> values``; timestamps as ISO 8601 strings) through a push source."""
        df = {k: list(v) for k, v in columns.items()}
        self._post("/push", {"push_source_name": push_source_name, "df": df, "to": to})
