"""The Iceberg offline store's configuration, its catalogs, and which table backs a source.

``offline_store`` block (``feature_store.yaml``)::

    offline_store:
      type: iceberg
      catalog:                        # pyiceberg catalog properties, passed through
        type: sql                     # sql (SQLite or PostgreSQL) | rest | any pyiceberg catalog type
        uri: sqlite:///data/iceberg/catalog.db        # or postgresql://postgres@127.0.0.1:5432/ladle
        warehouse: data/iceberg/warehouse             # or s3://bucket/prefix (with s3.* properties)
      namespace: commodity_analytics  # the namespace of tables that back FileSources
      catalogs:                       # more catalogs, named by IcebergSource(catalog=...)
        lake: {type: rest, uri: "https://catalog.example/api", credential: "${LAKE_CREDENTIAL}"}

Relative SQLite paths and a warehouse without a scheme are relative to the feature repo. A
``postgresql://`` catalog URI is driven by psycopg 3 (``postgresql+psycopg://``).

Which table backs a source (:func:`table_ref`): an ``IcebergSource`` names its table (and
catalog); a ``FileSource`` named ``X`` is the table ``<namespace>.X`` of the default catalog, so a
repo written for Parquet runs on Iceberg with only ``feature_store.yaml`` changed; a push or Kafka
source is its batch source's table.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import Field, field_validator

from ladle.config import RepoConfig, StrictModel
from ladle.definitions import DataSource, FileSource, IcebergSource, KafkaSource, PushSource
from ladle.errors import ConfigError, DataSourceError

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog

_DEFAULT_CATALOG = {"type": "sql", "uri": "sqlite:///data/iceberg/catalog.db", "warehouse": "data/iceberg/warehouse"}


class IcebergOfflineStoreConfig(StrictModel):
    """``offline_store:`` block of the Iceberg offline store."""

    type: Literal["iceberg"] = Field("iceberg", description="'iceberg' selects this store")
    catalog: dict[str, str] = Field(
        default_factory=lambda: dict(_DEFAULT_CATALOG),
        description="pyiceberg catalog properties (type, uri, warehouse, credentials ...); "
        "default: a SQLite catalog and a warehouse under data/iceberg/ in the repo",
    )
    catalog_name: str = Field("ladle", description="the default catalog's name (the SQL catalog keys its rows by it)")
    catalogs: dict[str, dict[str, str]] = Field(
        default_factory=dict, description="more catalogs by name, for IcebergSource(catalog=...)"
    )
    namespace: str = Field("ladle", description="namespace of the tables that back FileSources (and new tables)")
    partition_by: Literal["hour", "day", "month", "year", "none"] = Field(
        "day", description="event-time partitioning of the tables Ladle creates"
    )
    memory_limit: str | None = Field(None, description="DuckDB memory limit of the join, e.g. '1GB'")
    threads: int | None = Field(None, gt=0, description="DuckDB worker threads; default: one per core")
    temp_directory: str | None = Field(
        None, description="where DuckDB spills; default: <system temp>/ladle-duckdb-spill"
    )

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str) -> str:
        parts = value.split(".")
        if not all(p and (p[0].isalpha() or p[0] == "_") and p.replace("_", "").isalnum() for p in parts):
            raise ValueError(f"namespace {value!r} must be dot-separated names of letters, digits and '_'")
        return value


@dataclass(frozen=True)
class TableRef:
    """Where a source's rows live: a catalog (``""`` = the default one) and a table identifier."""

    catalog: str
    identifier: str

    def __str__(self) -> str:
        return f"{self.catalog}:{self.identifier}" if self.catalog else self.identifier


def iceberg_block(config: RepoConfig) -> IcebergOfflineStoreConfig:
    """The repo's Iceberg block (ConfigError when the offline store is not Iceberg)."""
    block = config.offline_store
    if not isinstance(block, IcebergOfflineStoreConfig):
        raise ConfigError(f"offline_store is '{block.type}', not 'iceberg'")
    return block


def table_ref(source: DataSource, block: IcebergOfflineStoreConfig) -> TableRef:
    """The table backing ``source`` (see the module docstring); DataSourceError for other kinds."""
    batch = source.batch_source if isinstance(source, (PushSource, KafkaSource)) else source
    if isinstance(batch, IcebergSource):
        if batch.catalog and batch.catalog not in block.catalogs:
            raise DataSourceError(
                f"iceberg source '{batch.name or batch.table}' names catalog '{batch.catalog}', which "
                f"offline_store.catalogs does not define (defined: {sorted(block.catalogs) or 'none'})"
            )
        return TableRef(batch.catalog, batch.table)
    if isinstance(batch, FileSource):
        if not batch.name:
            raise DataSourceError(
                f"file source {batch.path!r} has no name; on the iceberg store a FileSource is the table "
                f"'{block.namespace}.<source name>', so give it a name"
            )
        return TableRef("", f"{block.namespace}.{batch.name}")
    raise DataSourceError(
        f"source {batch.name or batch!r} is a {type(batch).__name__}; the iceberg offline store reads "
        "IcebergSource and FileSource (as the table <namespace>.<name>)"
    )


def catalog_properties(properties: dict[str, str], repo_path: Path) -> dict[str, str]:
    """Catalog properties with repo-relative SQLite paths and warehouses made absolute, and
    ``postgresql://`` URIs driven by psycopg 3."""
    props = dict(properties)
    uri = props.get("uri", "")
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        path = uri.removeprefix("sqlite:///")
        if path and path != ":memory:":
            absolute = (repo_path / path).resolve()
            absolute.parent.mkdir(parents=True, exist_ok=True)
            props["uri"] = f"sqlite:///{absolute}"
    elif uri.startswith(("postgresql://", "postgres://")):
        props["uri"] = "postgresql+psycopg://" + uri.split("://", 1)[1]
    warehouse = props.get("warehouse", "")
    if warehouse and "://" not in warehouse:
        directory = Path(warehouse).expanduser()
        directory = directory if directory.is_absolute() else (repo_path / directory)
        directory.mkdir(parents=True, exist_ok=True)
        props["warehouse"] = directory.resolve().as_uri()
    return props


def brief(exc: BaseException) -> str:
    """``Type: first line of the message``: library errors (SQLAlchemy's, HTTP) span several lines."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}".rstrip(": ")


class Catalogs:
    """The store's catalogs, each opened on first use and kept (thread-safe)."""

    _lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, block: IcebergOfflineStoreConfig, repo_path: Path) -> None:
        self.block = block
        self.repo_path = repo_path
        self._open: dict[str, Catalog] = {}

    def get(self, name: str = "") -> Catalog:
        """The catalog ``name`` (``""``: the default one); ConfigError if it cannot be opened."""
        with self._lock:
            if name not in self._open:
                self._open[name] = self._load(name)
            return self._open[name]

    def _load(self, name: str) -> Catalog:
        from pyiceberg.catalog import load_catalog

        if name:
            if name not in self.block.catalogs:
                raise ConfigError(f"offline_store.catalogs has no catalog '{name}'")
            props, label = self.block.catalogs[name], name
        else:
            props, label = self.block.catalog, self.block.catalog_name
        try:
            return load_catalog(label, **catalog_properties(props, self.repo_path))
        except ConfigError:
            raise
        except Exception as exc:  # pyiceberg raises many kinds (ValueError, SQLAlchemy, HTTP)
            raise ConfigError(f"cannot open iceberg catalog '{label}': {brief(exc)}") from exc
