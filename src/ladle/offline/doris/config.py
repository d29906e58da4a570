"""The ``offline_store:`` block of the MySQL-protocol store, and which table backs a source.

::

    offline_store:
      type: doris                 # doris | starrocks | mysql (MariaDB too): picks the SQL dialect
      host: doris-fe.internal
      port: 9030                  # default 9030 for doris/starrocks, 3306 for mysql
      user: ladle
      password: ${DORIS_PASSWORD} # expanded from the environment when feature_store.yaml is read
      database: features

Which table backs a source (:func:`source_relation`): a ``DorisSource`` names its table (or
query; its ``database`` defaults to the block's); a ``FileSource`` named ``X`` is the table ``X``
of the block's database, as on the Iceberg store, so a repo written for Parquet runs here with
only ``feature_store.yaml`` changed; a push or Kafka source is its batch source's table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import Field, SecretStr, model_validator

from ladle.config import RepoConfig, StrictModel
from ladle.definitions import DataSource, DorisSource, FileSource, KafkaSource, PushSource
from ladle.errors import ConfigError, DataSourceError

Dialect = Literal["doris", "starrocks", "mysql"]
DEFAULT_PORTS: dict[str, int] = {"doris": 9030, "starrocks": 9030, "mysql": 3306}


class DorisOfflineStoreConfig(StrictModel):
    """``offline_store:`` block of the MySQL-protocol store (Doris, StarRocks, MySQL/MariaDB)."""

    type: Dialect = Field(
        "doris", description="'doris', 'starrocks' or 'mysql' (also MariaDB): the server, hence the SQL dialect"
    )
    host: str = Field("127.0.0.1", description="server host (a Doris/StarRocks frontend, or the MySQL server)")
    port: int | None = Field(
        None, gt=0, lt=65536, description="server port; default 9030 (doris, starrocks), 3306 (mysql)"
    )
    user: str = Field("root", description="user name")
    password: SecretStr = Field(
        SecretStr(""), description="password; write '${ENV_VAR}' to take it from the environment"
    )
    database: str = Field(..., min_length=1, description="database of FileSource tables and DorisSources without one")
    work_database: str = Field(
        "", description="database for the temporary work tables of retrievals (needs CREATE/DROP); default: database"
    )
    connect_timeout_s: float = Field(10.0, gt=0, description="connection timeout, seconds")
    read_timeout_s: float | None = Field(
        None, gt=0, description="timeout of one read from the server, seconds (a long query must answer within it)"
    )
    tls: bool = Field(False, description="connect with TLS")
    tls_ca: str = Field("", description="CA bundle to verify the server with (implies tls)")
    tls_cert: str = Field("", description="client certificate (PEM), for mutual TLS")
    tls_key: str = Field("", description="client key (PEM), for mutual TLS")
    tls_verify: bool = Field(True, description="verify the server's certificate and host name when tls is on")
    asof_join: Literal["auto", "on", "off"] = Field(
        "auto",
        description="use the server's ASOF JOIN for the point-in-time join: auto (Doris >= 4.0.5, StarRocks >= 4.0, "
        "from SELECT version()), on, off (window functions)",
    )
    pit_strategy: Literal["auto", "lookup", "window"] = Field(
        "auto",
        description="without ASOF JOIN: 'lookup' (an indexed ORDER BY ... LIMIT 1 per entity row; mysql's default) "
        "or 'window' (running max over the union of entity and source rows; doris/starrocks default)",
    )
    upload_batch_rows: int = Field(
        10_000, gt=0, description="rows per multi-row INSERT when uploading an entity frame or appending rows"
    )
    fetch_batch_rows: int = Field(50_000, gt=0, description="rows per batch streamed back from the server")

    @model_validator(mode="after")
    def _asof_needs_doris_or_starrocks(self) -> DorisOfflineStoreConfig:
        if self.asof_join == "on" and self.type == "mysql":
            raise ValueError("asof_join: on needs doris or starrocks; MySQL and MariaDB have no ASOF JOIN")
        return self

    def effective_port(self) -> int:
        """The configured port, or the dialect's default."""
        return self.port or DEFAULT_PORTS[self.type]

    def work_db(self) -> str:
        """Database of the work tables."""
        return self.work_database or self.database


def doris_block(config: RepoConfig) -> DorisOfflineStoreConfig:
    """The repo's MySQL-protocol block (ConfigError when the offline store is another kind)."""
    block = config.offline_store
    if not isinstance(block, DorisOfflineStoreConfig):
        raise ConfigError(f"offline_store is '{block.type}', not one of 'doris', 'starrocks', 'mysql'")
    return block


@dataclass(frozen=True)
class SourceRelation:
    """A source's rows on the server: a table (``database``, ``table``) or a query."""

    label: str
    database: str = ""
    table: str = ""
    query: str = ""

    @property
    def is_table(self) -> bool:
        """True for a table (False for a query)."""
        return bool(self.table)

    def __str__(self) -> str:
        return f"{self.database}.{self.table}" if self.table else f"query of {self.label!r}"


def batch_of(source: DataSource) -> DataSource:
    """The batch source behind a push or Kafka source (the source itself otherwise)."""
    return source.batch_source if isinstance(source, (PushSource, KafkaSource)) else source


def source_relation(source: DataSource, block: DorisOfflineStoreConfig) -> SourceRelation:
    """Where ``source``'s rows are (module docstring); DataSourceError for other source kinds."""
    batch = batch_of(source)
    if isinstance(batch, DorisSource):
        label = batch.name or batch.table or "query"
        if batch.query:
            return SourceRelation(label, query=batch.query)
        database, _, table = batch.table.rpartition(".")
        return SourceRelation(label, database or batch.database or block.database, table)
    if isinstance(batch, FileSource):
        if not batch.name:
            raise DataSourceError(
                f"file source {batch.path!r} has no name; on the {block.type} store a FileSource is the table "
                f"'{block.database}.<source name>', so give it a name"
            )
        return SourceRelation(batch.name, block.database, batch.name)
    raise DataSourceError(
        f"source {batch.name or batch!r} is a {type(batch).__name__}; the {block.type} offline store reads "
        "DorisSource and FileSource (as the table <database>.<name>)"
    )
