"""Feast registry protos → Ladle definitions, one object at a time, with a note for what cannot map.

Each ``*_from_proto`` function takes a decoded Feast message (see :mod:`ladle.feast_import.protos`)
and returns the Ladle definition, or raises :class:`Unmapped` with the reason, which the importer
puts in its report. Nothing here is lossy in silence: a Feast setting Ladle has no place for is
either harmless by construction (documented in docs/migrating-from-feast.md) or a reason to refuse.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from ladle import definitions as lad
from ladle.definitions.feature_logging import FileLoggingDestination, LoggingConfig
from ladle.definitions.on_demand import OnDemandFeatureView
from ladle.errors import DefinitionError
from ladle.types import DType, Struct, ValueType, dtype_from_value_type

# feast.core.DataSource.SourceType numbers (facts from Feast's DataSource.proto).
BATCH_FILE = 1
STREAM_KAFKA = 3
REQUEST_SOURCE = 7
PUSH_SOURCE = 9
_SOURCE_TYPES = {
    0: "INVALID",
    1: "BATCH_FILE",
    2: "BATCH_BIGQUERY",
    3: "STREAM_KAFKA",
    4: "STREAM_KINESIS",
    5: "BATCH_REDSHIFT",
    6: "CUSTOM_SOURCE",
    7: "REQUEST_SOURCE",
    8: "BATCH_SNOWFLAKE",
    9: "PUSH_SOURCE",
    10: "BATCH_TRINO",
    11: "BATCH_SPARK",
    12: "BATCH_ATHENA",
}
#: The entity Feast adds to entity-less views; internal to Feast, never imported nor reported.
DUMMY_ENTITY = "__dummy"
# feast.core.FileFormat oneof members Ladle reads.
_PARQUET = "parquet_format"


class Unmapped(Exception):
    """An object Ladle cannot represent; ``reason`` goes into the import report."""

    def __init__(self, kind: str, name: str, reason: str) -> None:
        super().__init__(f"{kind} '{name}': {reason}")
        self.kind = kind
        self.name = name
        self.reason = reason


def _dtype(kind: str, owner: str, field: str, value_type: int) -> DType:
    try:
        return dtype_from_value_type(ValueType(value_type))
    except (ValueError, DefinitionError):
        raise Unmapped(kind, owner, f"field '{field}': value type {value_type} has no Ladle dtype") from None


def _tags(tags: Mapping[str, str]) -> dict[str, str]:
    return dict(sorted(tags.items()))


def _seconds(duration: Any) -> timedelta:
    return timedelta(seconds=duration.seconds, microseconds=duration.nanos // 1000)


#: The tag in which Feast keeps a Struct field's member types (JSON: name -> ValueType name or nested object).
STRUCT_SCHEMA_TAG = "feast:struct_schema"


def _struct_member(kind: str, owner: str, field: str, value: Any) -> DType:
    if isinstance(value, dict):
        return Struct({k: _struct_member(kind, owner, field, v) for k, v in value.items()})
    if isinstance(value, str) and value in ValueType.__members__:
        return _dtype(kind, owner, field, ValueType[value])
    raise Unmapped(kind, owner, f"field '{field}': struct member type {value!r} is not a Feast value type")


def _struct(kind: str, owner: str, spec: Any) -> DType:
    text = spec.tags.get(STRUCT_SCHEMA_TAG)
    if not text:
        raise Unmapped(kind, owner, f"field '{spec.name}': a Struct without its '{STRUCT_SCHEMA_TAG}' tag")
    try:
        members = json.loads(text)
    except ValueError:
        raise Unmapped(kind, owner, f"field '{spec.name}': its '{STRUCT_SCHEMA_TAG}' tag is not JSON") from None
    if not isinstance(members, dict) or not members:
        raise Unmapped(kind, owner, f"field '{spec.name}': its '{STRUCT_SCHEMA_TAG}' tag is not a JSON object")
    try:
        return _struct_member(kind, owner, spec.name, members)
    except DefinitionError as exc:
        raise Unmapped(kind, owner, f"field '{spec.name}': {exc}") from None


def field_from_proto(kind: str, owner: str, spec: Any) -> lad.Field:
    """A ``FeatureSpecV2`` as a Ladle :class:`~ladle.definitions.Field` (a Struct's members from its tag)."""
    if spec.vector_index:
        raise Unmapped(kind, owner, f"field '{spec.name}' has a vector index (Ladle has no vector search)")
    if spec.value_type == ValueType.STRUCT:
        dtype = _struct(kind, owner, spec)
        tags = {k: v for k, v in spec.tags.items() if k != STRUCT_SCHEMA_TAG}
    else:
        dtype, tags = _dtype(kind, owner, spec.name, spec.value_type), dict(spec.tags)
    return lad.Field(name=spec.name, dtype=dtype, description=spec.description, tags=_tags(tags))


def entity_from_proto(message: Any) -> lad.Entity:
    """A Feast ``Entity``."""
    spec = message.spec
    value_type = ValueType(spec.value_type) if spec.value_type > 0 else None
    try:
        return lad.Entity(
            name=spec.name,
            join_keys=[spec.join_key],
            value_type=value_type,
            description=spec.description,
            tags=_tags(spec.tags),
            owner=spec.owner,
        )
    except DefinitionError as exc:
        raise Unmapped("entity", spec.name, str(exc)) from None


def source_from_proto(message: Any) -> lad.DataSource:
    """A Feast ``DataSource``: file, push and Kafka map; the rest are reported."""
    kind = _SOURCE_TYPES.get(message.type, str(message.type))
    name = message.name
    common = {"description": message.description, "tags": _tags(message.tags), "owner": message.owner}
    try:
        if message.type == BATCH_FILE:
            return _file_source(message, common)
        if message.type == PUSH_SOURCE:
            return lad.PushSource(name=name, batch_source=source_from_proto(message.batch_source), **common)
        if message.type == STREAM_KAFKA:
            return _kafka_source(message, common)
    except DefinitionError as exc:
        raise Unmapped("data source", name, str(exc)) from None
    if message.type == REQUEST_SOURCE:
        schema = [field_from_proto("data source", name, f) for f in message.request_data_options.schema]
        try:
            return lad.RequestSource(name=name, schema=schema, **common)
        except DefinitionError as exc:
            raise Unmapped("data source", name, str(exc)) from None
    raise Unmapped("data source", name, f"source type {kind} has no Ladle equivalent")


def _file_source(message: Any, common: dict[str, Any]) -> lad.FileSource:
    options = message.file_options
    fmt = options.file_format.WhichOneof("format")
    if fmt not in (None, _PARQUET):
        raise Unmapped("data source", message.name, f"file format {fmt} (Ladle reads Parquet)")
    if options.s3_endpoint_override:
        raise Unmapped("data source", message.name, "s3_endpoint_override is not supported")
    return lad.FileSource(
        path=options.uri,
        timestamp_field=message.timestamp_field,
        created_timestamp_column=message.created_timestamp_column,
        field_mapping=dict(message.field_mapping),
        name=message.name,
        **common,
    )


def _kafka_source(message: Any, common: dict[str, Any]) -> lad.KafkaSource:
    options = message.kafka_options
    fmt = options.message_format.WhichOneof("format")
    if fmt == "json_format":
        stream_format: lad.StreamFormat = lad.JsonFormat(options.message_format.json_format.schema_json)
    elif fmt == "avro_format":
        stream_format = lad.AvroFormat(options.message_format.avro_format.schema_json)
    else:
        raise Unmapped("data source", message.name, f"Kafka message format {fmt} (Ladle reads JSON and Avro)")
    if not message.HasField("batch_source"):
        raise Unmapped("data source", message.name, "a Kafka source needs a batch_source in Ladle")
    return lad.KafkaSource(
        name=message.name,
        timestamp_field=message.timestamp_field,
        created_timestamp_column=message.created_timestamp_column,
        field_mapping=dict(message.field_mapping),
        message_format=stream_format,
        kafka_bootstrap_servers=options.kafka_bootstrap_servers,
        topic=options.topic,
        batch_source=source_from_proto(message.batch_source),
        watermark_delay_threshold=_seconds(options.watermark_delay_threshold),
        **common,
    )


def _view_source(kind: str, spec: Any, sources: Mapping[str, lad.DataSource]) -> lad.DataSource:
    # Feast keeps the batch source and, for push/Kafka views, the stream source whose batch
    # source is the same; Ladle's view reads the stream source and finds history through it.
    chosen = spec.stream_source if spec.HasField("stream_source") else spec.batch_source
    if chosen.name and chosen.name in sources:
        return sources[chosen.name]
    try:
        return source_from_proto(chosen)
    except Unmapped as exc:
        raise Unmapped(kind, spec.name, f"its source {exc.reason}") from None


def feature_view_from_proto(
    message: Any, entities: Mapping[str, lad.Entity], sources: Mapping[str, lad.DataSource]
) -> lad.FeatureView:
    """A Feast ``FeatureView`` (entities by name, the source from ``sources`` when named)."""
    spec = message.spec
    kind = "feature view"
    if spec.feature_transformation or spec.source_views:
        raise Unmapped(kind, spec.name, "it has a transformation (a BatchFeatureView udf or source views)")
    try:
        return lad.FeatureView(**_view_args(kind, spec, entities, sources))
    except DefinitionError as exc:
        raise Unmapped(kind, spec.name, str(exc)) from None


def _view_args(
    kind: str, spec: Any, entities: Mapping[str, lad.Entity], sources: Mapping[str, lad.DataSource]
) -> dict[str, Any]:
    names = [n for n in spec.entities if n != DUMMY_ENTITY]
    missing = [n for n in names if n not in entities]
    if missing:
        raise Unmapped(kind, spec.name, f"refers to entities {missing} that were not imported")
    if len(names) < len(spec.entities):
        raise Unmapped(kind, spec.name, "entity-less views are not supported by Ladle")
    schema = [field_from_proto(kind, spec.name, f) for f in spec.entity_columns]
    keys = {f.name for f in schema}
    # Feast lists a stream view's entity columns among its features too: one field each in Ladle.
    schema += [field_from_proto(kind, spec.name, f) for f in spec.features if f.name not in keys]
    return {
        "name": spec.name,
        "source": _view_source(kind, spec, sources),
        "schema": schema,
        "entities": [entities[n] for n in names],
        "ttl": _seconds(spec.ttl),
        "online": spec.online,
        "offline": "offline" in spec.DESCRIPTOR.fields_by_name and spec.offline,
        "description": spec.description,
        "tags": _tags(spec.tags),
        "owner": spec.owner,
    }


def feature_service_from_proto(
    message: Any, views: Mapping[str, lad.FeatureView | OnDemandFeatureView]
) -> lad.FeatureService:
    """A Feast ``FeatureService``; every projection must name an imported view."""
    spec = message.spec
    projections: list[lad.FeatureViewProjection] = []
    for item in spec.features:
        view = views.get(item.feature_view_name)
        if view is None:
            raise Unmapped("feature service", spec.name, f"reads '{item.feature_view_name}', which was not imported")
        columns = tuple(c.name for c in item.feature_columns) or tuple(view.feature_names)
        projections.append(
            lad.FeatureViewProjection(
                view.name, columns, item.feature_view_name_alias or None, dict(sorted(item.join_key_map.items()))
            )
        )
    try:
        return lad.FeatureService(
            name=spec.name,
            features=projections,
            description=spec.description,
            tags=_tags(spec.tags),
            owner=spec.owner,
            logging_config=_logging_config(spec),
        )
    except DefinitionError as exc:
        raise Unmapped("feature service", spec.name, str(exc)) from None


def _logging_config(spec: Any) -> LoggingConfig | None:
    """A service's ``LoggingConfig`` with a file destination (others are dropped with a note)."""
    if not spec.HasField("logging_config") or not spec.logging_config.HasField("file_destination"):
        return None
    config, file = spec.logging_config, spec.logging_config.file_destination
    destination = FileLoggingDestination(file.path, file.s3_endpoint_override, list(file.partition_by))
    return LoggingConfig(destination, config.sample_rate or 1.0)


# feast.core.PermissionSpec.Type numbers → Ladle resource kinds (None: Ladle has no such kind).
_PERMISSION_TYPES: dict[int, str | None] = {
    0: "feature_view",
    1: None,  # ON_DEMAND_FEATURE_VIEW
    2: "feature_view",  # BATCH_FEATURE_VIEW
    3: "feature_view",  # STREAM_FEATURE_VIEW
    4: "entity",
    5: "feature_service",
    6: "data_source",
    7: None,  # VALIDATION_REFERENCE
    8: None,  # SAVED_DATASET
    9: "permission",
    10: None,  # PROJECT
    11: None,  # LABEL_VIEW
}
_ACTIONS = ("CREATE", "DESCRIBE", "UPDATE", "DELETE", "READ_ONLINE", "READ_OFFLINE", "WRITE_ONLINE", "WRITE_OFFLINE")


def _policy(name: str, policy: Any) -> lad.Policy:
    which = policy.WhichOneof("policy_type")
    if which == "role_based_policy":
        return lad.RoleBasedPolicy(roles=list(policy.role_based_policy.roles))
    if which == "group_based_policy":
        return lad.GroupBasedPolicy(groups=list(policy.group_based_policy.groups))
    if which == "namespace_based_policy":
        return lad.NamespaceBasedPolicy(namespaces=list(policy.namespace_based_policy.namespaces))
    if which == "combined_group_namespace_policy":
        combined = policy.combined_group_namespace_policy
        return lad.CombinedGroupNamespacePolicy(groups=list(combined.groups), namespaces=list(combined.namespaces))
    return lad.AllowAll


def permission_from_proto(message: Any) -> tuple[lad.Permission, list[str]]:
    """A Feast ``Permission``, and notes on the resource types Ladle has no kind for (dropped)."""
    spec = message.spec
    kinds = {_PERMISSION_TYPES.get(t) for t in spec.types}
    dropped = sorted({t for t in spec.types if _PERMISSION_TYPES.get(t) is None})
    notes = [f"resource type numbers {dropped} have no Ladle kind and were left out"] if dropped else []
    known = sorted(k for k in kinds if k is not None)
    if spec.types and not known:
        raise Unmapped("permission", spec.name, "it only covers resource types Ladle has not got")
    try:
        actions = [_ACTIONS[a] for a in spec.actions]
    except IndexError:
        raise Unmapped("permission", spec.name, f"unknown action numbers {list(spec.actions)}") from None
    try:
        permission = lad.Permission(
            name=spec.name,
            types=known or None,
            name_patterns=list(spec.name_patterns),
            actions=actions or list(_ACTIONS),
            policy=_policy(spec.name, spec.policy),
            tags=_tags(spec.tags),
            required_tags=_tags(spec.required_tags),
        )
    except DefinitionError as exc:
        raise Unmapped("permission", spec.name, str(exc)) from None
    return permission, notes


def stream_view_from_proto(
    message: Any, entities: Mapping[str, lad.Entity], sources: Mapping[str, lad.DataSource]
) -> tuple[lad.StreamFeatureView, list[str]]:
    """A Feast ``StreamFeatureView`` without a transformation (functions are code: re-declare them).

    Feast stores ``slide_interval = time_window`` when none was given (its default); such an
    aggregation is imported as Ladle's continuous window, as the same repo loaded through the
    ``feast`` names gives (docs/migrating-from-feast.md). The notes say which.
    """
    spec = message.spec
    kind = "stream feature view"
    if spec.user_defined_function.name or spec.user_defined_function.body_text or spec.feature_transformation:
        raise Unmapped(kind, spec.name, "its transformation function is code; declare the view in the Ladle repo")
    args = _view_args(kind, spec, entities, sources)
    aggregations: list[lad.Aggregation] = []
    notes: list[str] = []
    for a in spec.aggregations:
        window, slide = _seconds(a.time_window), _seconds(a.slide_interval)
        if slide == window:
            notes.append(
                f"aggregation '{a.name or a.column}': slide_interval = time_window (Feast's default) "
                "imported as a continuous window"
            )
        aggregations.append(
            lad.Aggregation(
                column=a.column,
                function=a.function,
                time_window=window,
                slide_interval=None if slide in (window, timedelta(0)) else slide,
                name=a.name,
            )
        )
    mode = spec.mode if spec.mode in ("pandas", "python") else "pandas"
    try:
        return lad.StreamFeatureView(**args, aggregations=aggregations, mode=mode), notes
    except DefinitionError as exc:
        raise Unmapped(kind, spec.name, str(exc)) from None
