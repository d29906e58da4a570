"""``RemoteOfflineStore``: ``get_historical_features`` through a Ladle server (see the package docstring)."""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import pyarrow as pa
from pydantic import Field

from ladle.config import RepoConfig, StrictModel
from ladle.definitions import DataSource, FeatureService, FeatureView
from ladle.errors import BackendUnavailableError, ConfigError, UnsupportedFeatureError
from ladle.offline.remote.wire import ARROW_STREAM, encode_request, read_table

if TYPE_CHECKING:
    import pandas as pd

    from ladle.definitions.refs import ViewSelection
    from ladle.definitions.saved_dataset import ValidationReference


class RemoteOfflineStoreConfig(StrictModel):
    """``offline_store: {type: remote, path: http://host:6566, cert: ca.pem}`` (credentials: the SDK's)."""

    type: Literal["remote"] = "remote"
    path: str = Field("http://localhost:6566", description="the Ladle server's REST base URL")
    cert: str | None = Field(None, description="CA bundle (PEM) to verify an https server with")
    verify: bool = Field(True, description="verify the server's TLS certificate")
    timeout_seconds: float = Field(300.0, gt=0, description="per-request timeout (training sets take a while)")


class RemoteRetrievalJob:
    """A training set the server computes when the job runs (``to_df`` / ``to_arrow``)."""

    def __init__(self, store: RemoteOfflineStore, body: bytes) -> None:
        self._store = store
        self._body = body
        self._table: pa.Table | None = None
        #: Snapshot ids are the server's business: none are reported.
        self.snapshots: Mapping[str, int] = {}

    def to_arrow(self) -> pa.Table:
        """Run on the server; the result as an Arrow table (fetched once)."""
        if self._table is None:
            self._table = self._store.fetch(self._body)
        return self._table

    def to_df(self, validation_reference: ValidationReference | None = None) -> pd.DataFrame:
        """The result as a pandas DataFrame."""
        from ladle.offline.validation import check

        frame: pd.DataFrame = self.to_arrow().to_pandas()
        return check(frame, validation_reference)

    def to_parquet(self, path: str | Path) -> None:
        """Write the result to a Parquet file."""
        import pyarrow.parquet as pq

        pq.write_table(self.to_arrow(), Path(path))

    @property
    def sql(self) -> str:
        """No query runs here: the server's offline store runs it."""
        return f"-- runs on {self._store.url}"


class RemoteOfflineStore:
    """Historical retrieval through a server; materialization needs direct offline access (refused)."""

    config_class: ClassVar[type[StrictModel]] = RemoteOfflineStoreConfig

    def __init__(self, config: RepoConfig) -> None:
        cfg = config.offline_store
        if not isinstance(cfg, RemoteOfflineStoreConfig):
            cfg = RemoteOfflineStoreConfig.model_validate(dict(cfg or {}))
        if not cfg.path.startswith(("http://", "https://")):
            raise ConfigError(f"offline_store.path: {cfg.path!r} must be an http:// or https:// URL")
        self.config = cfg
        self.url = cfg.path.rstrip("/")
        #: Returns the bearer token to send (or None); FeatureStore sets it from its credentials.
        self.token_source: Callable[[], str | None] = lambda: None

    def get_historical_features(
        self, table: pa.Table, features: Sequence[str] | FeatureService | str, full_feature_names: bool
    ) -> RemoteRetrievalJob:
        """A job for the server's ``/get-historical-features`` with the entity frame ``table``."""
        if isinstance(features, FeatureService | str):
            name = features.name if isinstance(features, FeatureService) else features
            return RemoteRetrievalJob(self, encode_request(table, None, name, full_feature_names))
        return RemoteRetrievalJob(self, encode_request(table, list(features), None, full_feature_names))

    def fetch(self, body: bytes) -> pa.Table:
        """POST the request; the answer as a table (typed errors for 4xx/5xx)."""
        import httpx

        from ladle.online.remote.wire import error_of

        headers = {"Content-Type": ARROW_STREAM.decode(), "Accept": ARROW_STREAM.decode()}
        token = self.token_source()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        verify: ssl.SSLContext | bool = self.config.verify
        if self.config.verify and self.config.cert:
            verify = ssl.create_default_context(cafile=self.config.cert)
        url = self.url + "/get-historical-features"
        try:
            reply = httpx.post(url, content=body, headers=headers, verify=verify, timeout=self.config.timeout_seconds)
        except httpx.HTTPError as exc:
            raise BackendUnavailableError(f"cannot reach the feature server at {self.url}: {exc}") from exc
        if reply.status_code >= 400:
            raise error_of(reply.status_code, reply.content, url)
        return read_table(reply.content, "the server's answer")

    # -- the rest of the OfflineStore protocol: not through a server ----------------------------
    def _refuse(self, what: str) -> UnsupportedFeatureError:
        return UnsupportedFeatureError(
            f"{what} needs direct access to the offline store; the 'remote' offline store only takes training sets "
            "(get_historical_features). Run it where the offline store is configured (e.g. on the server)."
        )

    def source_schema(self, source: DataSource) -> pa.Schema:
        """Refused: apply where the sources can be read (or use --skip-source-validation)."""
        raise self._refuse("reading a source's schema")

    def pull_latest(
        self, view: FeatureView, start: datetime, end: datetime, batch_rows: int = 100_000
    ) -> Iterator[pa.RecordBatch]:
        """Refused: materialize on the server."""
        raise self._refuse("materialization")

    def historical(
        self, entity: pa.Table, ts_column: str, selections: Sequence[ViewSelection], full_feature_names: bool,
        **kwargs: Any,
    ) -> RemoteRetrievalJob:  # fmt: skip
        """Refused: :meth:`get_historical_features` sends the references, not resolved selections."""
        raise self._refuse("a resolved point-in-time join")
