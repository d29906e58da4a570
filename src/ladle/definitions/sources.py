"""Data sources: ``FileSource`` (Parquet, batch), ``IcebergSource`` and ``DorisSource`` (lakehouse
tables, batch), ``PushSource`` (fresh rows pushed in) and ``KafkaSource`` (a topic read by
``ladle stream``, with a batch source for its history).

Sources are serialized as specs with a ``type`` key; :func:`source_from_spec` dispatches on it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from typing import Any

from ladle.definitions._common import check_name, check_str, check_tags, common_args, common_spec
from ladle.definitions.field import Field
from ladle.definitions.formats import StreamFormat, format_from_spec
from ladle.errors import DefinitionError


class DataSource:
    """Base of all sources: a name, metadata and timestamp columns."""

    kind = "data source"
    type_name = ""

    def __init__(
        self,
        name: str,
        timestamp_field: str = "",
        created_timestamp_column: str = "",
        field_mapping: Mapping[str, str] | None = None,
        description: str = "",
        tags: Mapping[str, str] | None = None,
        owner: str = "",
    ) -> None:
        self.name = check_name(self.kind, name) if name else ""
        label = name or self.kind
        self.timestamp_field = check_str(self.kind, label, "timestamp_field", timestamp_field)
        self.created_timestamp_column = check_str(
            self.kind, label, "created_timestamp_column", created_timestamp_column
        )
        mapping = dict(field_mapping or {})
        for src, dst in mapping.items():
            if not isinstance(src, str) or not isinstance(dst, str):
                raise DefinitionError(f"{self.kind} '{label}': field_mapping must map str to str")
        if self.timestamp_field and self.timestamp_field == self.created_timestamp_column:
            raise DefinitionError(
                f"{self.kind} '{label}': timestamp_field and created_timestamp_column "
                f"are both '{self.timestamp_field}'; they must be different columns"
            )
        self.field_mapping = mapping
        self.description = check_str(self.kind, label, "description", description)
        self.tags = check_tags(self.kind, label, tags)
        self.owner = check_str(self.kind, label, "owner", owner)

    def to_spec(self) -> dict[str, Any]:
        """JSON-ready spec as stored in the registry."""
        return {
            "type": self.type_name,
            "name": self.name,
            "timestamp_field": self.timestamp_field,
            "created_timestamp_column": self.created_timestamp_column,
            "field_mapping": dict(sorted(self.field_mapping.items())),
            **common_spec(self),
        }

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DataSource) and self.to_spec() == other.to_spec()

    def __hash__(self) -> int:
        return hash((self.type_name, self.name))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


class FileSource(DataSource):
    """Parquet file(s) as a batch source: a file, a directory or a glob.

    >>> FileSource(name="ticks", path="data/ticks.parquet", timestamp_field="event_timestamp",
    ...            created_timestamp_column="created")
    FileSource(name='ticks')

    A relative ``path`` is resolved against the feature repo directory.
    """

    kind = "file source"
    type_name = "file"

    def __init__(
        self,
        path: str,
        timestamp_field: str = "",
        created_timestamp_column: str = "",
        field_mapping: Mapping[str, str] | None = None,
        name: str = "",
        description: str = "",
        tags: Mapping[str, str] | None = None,
        owner: str = "",
        file_format: str = "parquet",
    ) -> None:
        if not isinstance(path, str) or not path:
            raise DefinitionError(f"file source '{name}': path must be a non-empty string")
        if file_format != "parquet":
            raise DefinitionError(f"file source '{name}': file_format {file_format!r} is not supported; use 'parquet'")
        super().__init__(name or "", timestamp_field, created_timestamp_column, field_mapping, description, tags, owner)
        if not self.timestamp_field:
            raise DefinitionError(f"file source '{name or path}': timestamp_field is required")
        self.path = path
        self.file_format = file_format

    def to_spec(self) -> dict[str, Any]:
        """JSON-ready spec as stored in the registry."""
        return {**super().to_spec(), "path": self.path, "file_format": self.file_format}

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> FileSource:
        """Rebuild from :meth:`to_spec` output."""
        return cls(
            path=spec["path"],
            timestamp_field=spec.get("timestamp_field", ""),
            created_timestamp_column=spec.get("created_timestamp_column", ""),
            field_mapping=spec.get("field_mapping"),
            name=spec.get("name", ""),
            **common_args(spec),
            file_format=spec.get("file_format", "parquet"),
        )


class PushSource(DataSource):
    """Rows pushed by clients (``store.push`` or ``POST /push``), backed by a batch source.

    The batch source is where ``to="offline"`` pushes are appended and where history is read.
    """

    kind = "push source"
    type_name = "push"

    def __init__(
        self,
        name: str,
        batch_source: DataSource,
        description: str = "",
        tags: Mapping[str, str] | None = None,
        owner: str = "",
    ) -> None:
        if not name:
            raise DefinitionError("push source: a name is required")
        if not isinstance(batch_source, DataSource) or isinstance(batch_source, PushSource):
            raise DefinitionError(f"push source '{name}': batch_source must be a batch source such as FileSource")
        super().__init__(
            name,
            batch_source.timestamp_field,
            batch_source.created_timestamp_column,
            batch_source.field_mapping,
            description,
            tags,
            owner,
        )
        self.batch_source = batch_source

    def to_spec(self) -> dict[str, Any]:
        """JSON-ready spec as stored in the registry."""
        return {**super().to_spec(), "batch_source": self.batch_source.to_spec()}

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> PushSource:
        """Rebuild from :meth:`to_spec` output."""
        return cls(
            name=spec["name"],
            batch_source=source_from_spec(spec["batch_source"]),
            **common_args(spec),
        )


_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _identifier(kind: str, label: str, what: str, value: str, min_parts: int) -> str:
    """A dotted identifier (``namespace.table``) whose parts are plain SQL names."""
    parts = value.split(".") if isinstance(value, str) else []
    if len(parts) < min_parts or not all(_IDENT.match(p) for p in parts):
        raise DefinitionError(
            f"{kind} '{label}': {what} {value!r} must be {min_parts} or more dot-separated names "
            "of letters, digits and '_' (e.g. 'commodity.prices')"
        )
    return value


class IcebergSource(DataSource):
    """An Apache Iceberg table as a batch source, read through pyiceberg (``offline_store: {type: iceberg}``).

    >>> IcebergSource(name="ticks", table="commodity.ticks", timestamp_field="event_timestamp")
    IcebergSource(name='ticks')

    ``table`` is the identifier in the catalog (``namespace.table``, nested namespaces allowed);
    ``catalog`` names one of ``offline_store.catalogs`` in ``feature_store.yaml`` (empty: the store's
    own ``catalog``). Connection settings live in the configuration, never in the definition.
    """

    kind = "iceberg source"
    type_name = "iceberg"

    def __init__(
        self,
        table: str,
        timestamp_field: str = "",
        created_timestamp_column: str = "",
        field_mapping: Mapping[str, str] | None = None,
        name: str = "",
        description: str = "",
        tags: Mapping[str, str] | None = None,
        owner: str = "",
        catalog: str = "",
    ) -> None:
        label = name or str(table)
        super().__init__(name or "", timestamp_field, created_timestamp_column, field_mapping, description, tags, owner)
        if not self.timestamp_field:
            raise DefinitionError(f"iceberg source '{label}': timestamp_field is required")
        self.table = _identifier(self.kind, label, "table", table, 2)
        if catalog and not _IDENT.match(catalog):
            raise DefinitionError(f"iceberg source '{label}': catalog {catalog!r} is not a plain name")
        self.catalog = catalog

    def to_spec(self) -> dict[str, Any]:
        """JSON-ready spec as stored in the registry."""
        return {**super().to_spec(), "table": self.table, "catalog": self.catalog}

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> IcebergSource:
        """Rebuild from :meth:`to_spec` output."""
        return cls(
            table=spec["table"],
            timestamp_field=spec.get("timestamp_field", ""),
            created_timestamp_column=spec.get("created_timestamp_column", ""),
            field_mapping=spec.get("field_mapping"),
            name=spec.get("name", ""),
            catalog=spec.get("catalog", ""),
            **common_args(spec),
        )


class DorisSource(DataSource):
    """A table or a query in Apache Doris (or StarRocks, or MySQL/MariaDB), over the MySQL protocol.

    >>> DorisSource(name="ticks", table="ticks", database="commodity", timestamp_field="event_timestamp")
    DorisSource(name='ticks')

    Give exactly one of ``table`` (optionally ``db.table``) and ``query`` (a SELECT, used as a
    subquery). ``database`` defaults to the offline store's ``database``. Connection settings live
    in ``feature_store.yaml`` (``offline_store: {type: doris, host: ..., port: 9030, ...}``).
    """

    kind = "doris source"
    type_name = "doris"

    def __init__(
        self,
        table: str = "",
        query: str = "",
        database: str = "",
        timestamp_field: str = "",
        created_timestamp_column: str = "",
        field_mapping: Mapping[str, str] | None = None,
        name: str = "",
        description: str = "",
        tags: Mapping[str, str] | None = None,
        owner: str = "",
    ) -> None:
        label = name or str(table or "query")
        super().__init__(name or "", timestamp_field, created_timestamp_column, field_mapping, description, tags, owner)
        if not self.timestamp_field:
            raise DefinitionError(f"doris source '{label}': timestamp_field is required")
        if bool(table) == bool(query):
            raise DefinitionError(f"doris source '{label}': give exactly one of table and query")
        if table:
            _identifier(self.kind, label, "table", table, 1)
        if query and (not isinstance(query, str) or not re.match(r"\s*(select|with)\s", query, re.IGNORECASE)):
            raise DefinitionError(f"doris source '{label}': query must be a SELECT (or WITH ... SELECT) statement")
        if database:
            _identifier(self.kind, label, "database", database, 1)
        self.table = table
        self.query = query
        self.database = database

    def to_spec(self) -> dict[str, Any]:
        """JSON-ready spec as stored in the registry."""
        return {**super().to_spec(), "table": self.table, "query": self.query, "database": self.database}

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> DorisSource:
        """Rebuild from :meth:`to_spec` output."""
        return cls(
            table=spec.get("table", ""),
            query=spec.get("query", ""),
            database=spec.get("database", ""),
            timestamp_field=spec.get("timestamp_field", ""),
            created_timestamp_column=spec.get("created_timestamp_column", ""),
            field_mapping=spec.get("field_mapping"),
            name=spec.get("name", ""),
            **common_args(spec),
        )


class KafkaSource(DataSource):
    """A Kafka topic read by ``ladle stream``, with Feast's arguments.

    >>> ticks = KafkaSource(name="commodity_ticks", kafka_bootstrap_servers="127.0.0.1:9092",
    ...     topic="commodity-ticks", timestamp_field="event_timestamp", message_format=JsonFormat(),
    ...     batch_source=FileSource(path="data/offline/commodity_ticks/", timestamp_field="event_timestamp"),
    ...     watermark_delay_threshold=timedelta(minutes=5))

    ``batch_source`` holds the same events for history: the stream process appends every event
    it accepts there, and backfills, training sets and materialization read it. An event older
    than the partition's newest event time minus ``watermark_delay_threshold`` (zero when not
    given) is late and goes to the dead-letter topic. Connection settings beyond the bootstrap
    servers (SASL, TLS) come from ``feature_store.yaml``, never from the definition.
    """

    kind = "kafka source"
    type_name = "kafka"

    def __init__(
        self,
        *,
        name: str,
        timestamp_field: str,
        message_format: StreamFormat,
        bootstrap_servers: str | None = None,
        kafka_bootstrap_servers: str | None = None,
        topic: str | None = None,
        created_timestamp_column: str = "",
        field_mapping: Mapping[str, str] | None = None,
        description: str = "",
        tags: Mapping[str, str] | None = None,
        owner: str = "",
        batch_source: DataSource | None = None,
        watermark_delay_threshold: timedelta | None = None,
    ) -> None:
        if not name:
            raise DefinitionError("kafka source: a name is required")
        super().__init__(name, timestamp_field, created_timestamp_column, field_mapping, description, tags, owner)
        if not self.timestamp_field:
            raise DefinitionError(f"kafka source '{name}': timestamp_field is required")
        if bootstrap_servers and kafka_bootstrap_servers and bootstrap_servers != kafka_bootstrap_servers:
            raise DefinitionError(f"kafka source '{name}': bootstrap_servers and kafka_bootstrap_servers differ")
        servers = kafka_bootstrap_servers or bootstrap_servers or ""
        if not isinstance(servers, str) or not servers:
            raise DefinitionError(f"kafka source '{name}': kafka_bootstrap_servers is required")
        if not isinstance(topic, str) or not re.fullmatch(r"[A-Za-z0-9._-]{1,249}", topic or ""):
            raise DefinitionError(f"kafka source '{name}': topic {topic!r} is not a valid Kafka topic name")
        if not isinstance(message_format, StreamFormat):
            raise DefinitionError(f"kafka source '{name}': message_format must be JsonFormat(...) or AvroFormat(...)")
        if batch_source is None:
            raise DefinitionError(
                f"kafka source '{name}': batch_source is required: it is where accepted events are kept "
                "and where backfills and training sets read them"
            )
        if not isinstance(batch_source, DataSource) or isinstance(batch_source, (PushSource, KafkaSource)):
            raise DefinitionError(f"kafka source '{name}': batch_source must be a batch source such as FileSource")
        if batch_source.timestamp_field != self.timestamp_field:
            raise DefinitionError(
                f"kafka source '{name}': timestamp_field '{self.timestamp_field}' differs from its batch "
                f"source's '{batch_source.timestamp_field}'; events are stored as they arrive"
            )
        if batch_source.created_timestamp_column != self.created_timestamp_column:
            raise DefinitionError(f"kafka source '{name}': created_timestamp_column differs from its batch source's")
        delay = watermark_delay_threshold if watermark_delay_threshold is not None else timedelta(0)
        if not isinstance(delay, timedelta) or delay < timedelta(0):
            raise DefinitionError(
                f"kafka source '{name}': watermark_delay_threshold must be a non-negative timedelta, got {delay!r}"
            )
        declared = {self.field_mapping.get(n, n) for n, _ in message_format.fields()}
        missing = [
            c for c in (self.timestamp_field, self.created_timestamp_column) if c and declared and c not in declared
        ]
        if missing:
            raise DefinitionError(
                f"kafka source '{name}': the message format declares no field {missing}; every message would be "
                "dead-lettered"
            )
        self.kafka_bootstrap_servers = servers
        self.topic = topic
        self.message_format = message_format
        self.batch_source = batch_source
        self.watermark_delay_threshold = delay

    @property
    def bootstrap_servers(self) -> str:
        """Feast's other name for :attr:`kafka_bootstrap_servers`."""
        return self.kafka_bootstrap_servers

    def to_spec(self) -> dict[str, Any]:
        """JSON-ready spec as stored in the registry."""
        return {
            **super().to_spec(),
            "kafka_bootstrap_servers": self.kafka_bootstrap_servers,
            "topic": self.topic,
            "message_format": self.message_format.to_spec(),
            "batch_source": self.batch_source.to_spec(),
            "watermark_delay_threshold_seconds": self.watermark_delay_threshold.total_seconds(),
        }

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> KafkaSource:
        """Rebuild from :meth:`to_spec` output."""
        return cls(
            name=spec["name"],
            timestamp_field=spec["timestamp_field"],
            created_timestamp_column=spec.get("created_timestamp_column", ""),
            field_mapping=spec.get("field_mapping"),
            message_format=format_from_spec(spec["message_format"]),
            kafka_bootstrap_servers=spec["kafka_bootstrap_servers"],
            topic=spec["topic"],
            batch_source=source_from_spec(spec["batch_source"]),
            watermark_delay_threshold=timedelta(seconds=spec.get("watermark_delay_threshold_seconds", 0)),
            **common_args(spec),
        )


class RequestSource(DataSource):
    """Values that arrive with each request (not stored), for on-demand feature views.

    >>> RequestSource(name="order", schema=[Field(name="amount", dtype=Float64)])
    RequestSource(name='order')

    Online, each schema field is a column of the request's entity rows; in historical retrieval,
    a column of the entity frame.
    """

    kind = "request source"
    type_name = "request"

    def __init__(
        self,
        name: str,
        schema: Sequence[Field],
        description: str = "",
        tags: Mapping[str, str] | None = None,
        owner: str = "",
    ) -> None:
        if not name:
            raise DefinitionError("request source: a name is required")
        super().__init__(name, description=description, tags=tags, owner=owner)
        fields = list(schema or [])
        if not fields or not all(isinstance(f, Field) for f in fields):
            raise DefinitionError(f"request source '{name}': schema must be a non-empty list of Field")
        names = [f.name for f in fields]
        if len(set(names)) != len(names):
            raise DefinitionError(f"request source '{name}': schema names a field twice: {names}")
        self.schema = fields

    def to_spec(self) -> dict[str, Any]:
        """JSON-ready spec as stored in the registry."""
        return {**super().to_spec(), "schema": [f.to_spec() for f in self.schema]}

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> RequestSource:
        """Rebuild from :meth:`to_spec` output."""
        return cls(name=spec["name"], schema=[Field.from_spec(f) for f in spec["schema"]], **common_args(spec))


_FROM_SPEC: dict[str, Callable[[Mapping[str, Any]], DataSource]] = {
    FileSource.type_name: FileSource.from_spec,
    PushSource.type_name: PushSource.from_spec,
    KafkaSource.type_name: KafkaSource.from_spec,
    IcebergSource.type_name: IcebergSource.from_spec,
    DorisSource.type_name: DorisSource.from_spec,
    RequestSource.type_name: RequestSource.from_spec,
}


def source_from_spec(spec: Mapping[str, Any]) -> DataSource:
    """Rebuild any source from its spec."""
    try:
        factory = _FROM_SPEC[spec["type"]]
    except KeyError:
        raise DefinitionError(f"unknown data source type {spec.get('type')!r}") from None
    try:
        return factory(spec)
    except KeyError as exc:
        raise DefinitionError(f"{spec['type']} data source spec has no {exc.args[0]!r}") from None
