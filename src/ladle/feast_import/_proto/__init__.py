"""Just enough of Feast's registry messages to read a Feast registry, as descriptors built here.

The field numbers and types are facts from Feast's public ``protos/feast/core/*.proto`` (checked
against Feast 0.67 by ``tests/feast_compat/test_import_protos.py``); the text is Ladle's. Only the
fields the importer reads are declared: protobuf skips the others on parse. Sub-messages the
importer only tests for presence are declared as ``bytes`` (same wire type). Enums are declared
as ``int32`` (same varint encoding), so an enum value added by a later Feast still decodes.
Messages live in the private package ``ladle_feast_registry`` of a private descriptor pool, so
they never clash with the ``feast.*`` serving protos of :mod:`ladle.server`.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

PACKAGE = "ladle_feast_registry"

# (field name, number, type, repeated). Types: a scalar name, "map" (string -> string) or a message name.
Field = tuple[str, int, str, bool]

_MESSAGES: dict[str, list[Field]] = {
    "Duration": [("seconds", 1, "int64", False), ("nanos", 2, "int32", False)],
    "Timestamp": [("seconds", 1, "int64", False), ("nanos", 2, "int32", False)],
    "Registry": [
        ("entities", 1, "Entity", True),
        ("feature_tables", 2, "bytes", True),
        ("registry_schema_version", 3, "string", False),
        ("version_id", 4, "string", False),
        ("last_updated", 5, "Timestamp", False),
        ("feature_views", 6, "FeatureView", True),
        ("feature_services", 7, "FeatureService", True),
        ("on_demand_feature_views", 8, "OnDemandFeatureView", True),
        ("saved_datasets", 11, "SavedDataset", True),
        ("data_sources", 12, "DataSource", True),
        ("validation_references", 13, "ValidationReference", True),
        ("stream_feature_views", 14, "StreamFeatureView", True),
        ("project_metadata", 15, "ProjectMetadata", True),
        ("permissions", 16, "Permission", True),
        ("projects", 17, "Project", True),
        ("label_views", 19, "LabelView", True),
    ],
    "ProjectMetadata": [("project", 1, "string", False), ("project_uuid", 2, "string", False)],
    "Project": [("spec", 1, "ProjectSpec", False)],
    "ProjectSpec": [
        ("name", 1, "string", False),
        ("description", 2, "string", False),
        ("tags", 3, "map", False),
        ("owner", 4, "string", False),
    ],
    "Entity": [("spec", 1, "EntitySpecV2", False)],
    "EntitySpecV2": [
        ("name", 1, "string", False),
        ("value_type", 2, "int32", False),
        ("description", 3, "string", False),
        ("join_key", 4, "string", False),
        ("tags", 8, "map", False),
        ("project", 9, "string", False),
        ("owner", 10, "string", False),
    ],
    "FeatureSpecV2": [
        ("name", 1, "string", False),
        ("value_type", 2, "int32", False),
        ("tags", 3, "map", False),
        ("description", 4, "string", False),
        ("vector_index", 5, "bool", False),
    ],
    "DataSource": [
        ("type", 1, "int32", False),
        ("field_mapping", 2, "map", False),
        ("timestamp_field", 3, "string", False),
        ("created_timestamp_column", 5, "string", False),
        ("file_options", 11, "FileOptions", False),
        ("kafka_options", 13, "KafkaOptions", False),
        ("request_data_options", 18, "RequestDataOptions", False),
        ("name", 20, "string", False),
        ("project", 21, "string", False),
        ("description", 23, "string", False),
        ("tags", 24, "map", False),
        ("owner", 25, "string", False),
        ("batch_source", 26, "DataSource", False),
    ],
    "FileOptions": [
        ("file_format", 1, "FileFormat", False),
        ("uri", 2, "string", False),
        ("s3_endpoint_override", 3, "string", False),
    ],
    "FileFormat": [("parquet_format", 1, "bytes", False), ("delta_format", 2, "bytes", False)],
    "KafkaOptions": [
        ("kafka_bootstrap_servers", 1, "string", False),
        ("topic", 2, "string", False),
        ("message_format", 3, "StreamFormat", False),
        ("watermark_delay_threshold", 4, "Duration", False),
    ],
    "StreamFormat": [
        ("avro_format", 1, "SchemaJson", False),
        ("proto_format", 2, "bytes", False),
        ("json_format", 3, "SchemaJson", False),
    ],
    "SchemaJson": [("schema_json", 1, "string", False)],
    "RequestDataOptions": [("schema", 3, "FeatureSpecV2", True)],
    "FeatureView": [("spec", 1, "FeatureViewSpec", False)],
    "FeatureViewSpec": [
        ("name", 1, "string", False),
        ("project", 2, "string", False),
        ("entities", 3, "string", True),
        ("features", 4, "FeatureSpecV2", True),
        ("tags", 5, "map", False),
        ("ttl", 6, "Duration", False),
        ("batch_source", 7, "DataSource", False),
        ("online", 8, "bool", False),
        ("stream_source", 9, "DataSource", False),
        ("description", 10, "string", False),
        ("owner", 11, "string", False),
        ("entity_columns", 12, "FeatureSpecV2", True),
        ("offline", 13, "bool", False),
        ("source_views", 14, "bytes", True),
        ("feature_transformation", 15, "bytes", False),
        ("mode", 16, "string", False),
    ],
    "FeatureService": [("spec", 1, "FeatureServiceSpec", False)],
    "FeatureServiceSpec": [
        ("name", 1, "string", False),
        ("project", 2, "string", False),
        ("features", 3, "FeatureViewProjection", True),
        ("tags", 4, "map", False),
        ("description", 5, "string", False),
        ("owner", 6, "string", False),
        ("logging_config", 7, "LoggingConfig", False),
    ],
    "LoggingConfig": [
        ("sample_rate", 1, "float", False),
        ("file_destination", 3, "LoggingFileDestination", False),
        ("bigquery_destination", 4, "bytes", False),
        ("redshift_destination", 5, "bytes", False),
        ("snowflake_destination", 6, "bytes", False),
        ("custom_destination", 7, "bytes", False),
        ("athena_destination", 8, "bytes", False),
        ("couchbase_columnar_destination", 9, "bytes", False),
    ],
    "LoggingFileDestination": [
        ("path", 1, "string", False),
        ("s3_endpoint_override", 2, "string", False),
        ("partition_by", 3, "string", True),
    ],
    "FeatureViewProjection": [
        ("feature_view_name", 1, "string", False),
        ("feature_columns", 2, "FeatureSpecV2", True),
        ("feature_view_name_alias", 3, "string", False),
        ("join_key_map", 4, "map", False),
    ],
    "OnDemandFeatureView": [("spec", 1, "OnDemandFeatureViewSpec", False)],
    "OnDemandFeatureViewSpec": [
        ("name", 1, "string", False),
        ("project", 2, "string", False),
        ("features", 3, "FeatureSpecV2", True),
        ("sources", 4, "OnDemandSourcesEntry", True),  # map<string, OnDemandSource>: the same wire form
        ("user_defined_function", 5, "UserDefinedFunction", False),
        ("description", 6, "string", False),
        ("tags", 7, "map", False),
        ("owner", 8, "string", False),
        ("feature_transformation", 10, "FeatureTransformationV2", False),
        ("mode", 11, "string", False),
        ("write_to_online_store", 12, "bool", False),
        ("entities", 13, "string", True),
        ("singleton", 15, "bool", False),
        ("aggregations", 16, "bytes", True),
        ("version", 17, "string", False),
    ],
    "LabelView": [("spec", 1, "LabelViewSpec", False)],
    "LabelViewSpec": [
        ("name", 1, "string", False),
        ("project", 2, "string", False),
        ("entities", 3, "string", True),
        ("features", 4, "FeatureSpecV2", True),
        ("tags", 5, "map", False),
        ("ttl", 6, "Duration", False),
        ("source", 7, "DataSource", False),
        ("online", 8, "bool", False),
        ("description", 9, "string", False),
        ("owner", 10, "string", False),
        ("entity_columns", 11, "FeatureSpecV2", True),
        ("labeler_field", 12, "string", False),
        ("conflict_policy", 13, "int32", False),
        ("retain_history", 14, "bool", False),
        ("reference_feature_view", 15, "string", False),
    ],
    "OnDemandSourcesEntry": [("key", 1, "string", False), ("value", 2, "OnDemandSource", False)],
    "OnDemandSource": [
        ("feature_view", 1, "FeatureView", False),
        ("request_data_source", 2, "DataSource", False),
        ("feature_view_projection", 3, "FeatureViewProjection", False),
    ],
    "FeatureTransformationV2": [
        ("user_defined_function", 1, "UserDefinedFunctionV2", False),
        ("substrait_transformation", 2, "bytes", False),
    ],
    "UserDefinedFunctionV2": [
        ("name", 1, "string", False),
        ("body_text", 3, "string", False),
        ("mode", 4, "string", False),
    ],
    "StreamFeatureView": [("spec", 1, "StreamFeatureViewSpec", False)],
    "StreamFeatureViewSpec": [
        ("name", 1, "string", False),
        ("project", 2, "string", False),
        ("entities", 3, "string", True),
        ("features", 4, "FeatureSpecV2", True),
        ("entity_columns", 5, "FeatureSpecV2", True),
        ("description", 6, "string", False),
        ("tags", 7, "map", False),
        ("owner", 8, "string", False),
        ("ttl", 9, "Duration", False),
        ("batch_source", 10, "DataSource", False),
        ("stream_source", 11, "DataSource", False),
        ("online", 12, "bool", False),
        ("user_defined_function", 13, "UserDefinedFunction", False),
        ("mode", 14, "string", False),
        ("aggregations", 15, "Aggregation", True),
        ("timestamp_field", 16, "string", False),
        ("feature_transformation", 17, "bytes", False),
    ],
    "UserDefinedFunction": [("name", 1, "string", False), ("body_text", 3, "string", False)],
    "Aggregation": [
        ("column", 1, "string", False),
        ("function", 2, "string", False),
        ("time_window", 3, "Duration", False),
        ("slide_interval", 4, "Duration", False),
        ("name", 5, "string", False),
    ],
    "SavedDataset": [("spec", 1, "SavedDatasetSpec", False), ("meta", 2, "SavedDatasetMeta", False)],
    "SavedDatasetSpec": [
        ("name", 1, "string", False),
        ("project", 2, "string", False),
        ("features", 3, "string", True),
        ("join_keys", 4, "string", True),
        ("full_feature_names", 5, "bool", False),
        ("storage", 6, "SavedDatasetStorage", False),
        ("tags", 7, "map", False),
        ("feature_service_name", 8, "string", False),
    ],
    "SavedDatasetStorage": [
        ("file_storage", 4, "FileOptions", False),
        ("bigquery_storage", 5, "bytes", False),
        ("redshift_storage", 6, "bytes", False),
        ("snowflake_storage", 7, "bytes", False),
        ("trino_storage", 8, "bytes", False),
        ("spark_storage", 9, "bytes", False),
        ("custom_storage", 10, "bytes", False),
        ("athena_storage", 11, "bytes", False),
    ],
    "SavedDatasetMeta": [
        ("min_event_timestamp", 3, "Timestamp", False),
        ("max_event_timestamp", 4, "Timestamp", False),
    ],
    # Only named in the import report (its profiler is pickled Python): name (1) and project (3).
    "ValidationReference": [("name", 1, "string", False), ("project", 3, "string", False)],
    "Permission": [("spec", 1, "PermissionSpec", False)],
    "PermissionSpec": [
        ("name", 1, "string", False),
        ("project", 2, "string", False),
        ("types", 3, "int32", True),
        ("name_patterns", 4, "string", True),
        ("required_tags", 5, "map", False),
        ("actions", 6, "int32", True),
        ("policy", 7, "Policy", False),
        ("tags", 8, "map", False),
    ],
    "Policy": [
        ("role_based_policy", 3, "RoleBasedPolicy", False),
        ("group_based_policy", 4, "GroupBasedPolicy", False),
        ("namespace_based_policy", 5, "NamespaceBasedPolicy", False),
        ("combined_group_namespace_policy", 6, "CombinedGroupNamespacePolicy", False),
    ],
    "RoleBasedPolicy": [("roles", 1, "string", True)],
    "GroupBasedPolicy": [("groups", 1, "string", True)],
    "NamespaceBasedPolicy": [("namespaces", 1, "string", True)],
    "CombinedGroupNamespacePolicy": [("groups", 1, "string", True), ("namespaces", 2, "string", True)],
}
# oneof groups: message -> (oneof name, member fields)
_ONEOFS: dict[str, tuple[str, tuple[str, ...]]] = {
    "FileFormat": ("format", ("parquet_format", "delta_format")),
    "SavedDatasetStorage": (
        "kind",
        (
            "file_storage",
            "bigquery_storage",
            "redshift_storage",
            "snowflake_storage",
            "trino_storage",
            "spark_storage",
            "custom_storage",
            "athena_storage",
        ),
    ),
    "OnDemandSource": ("source", ("feature_view", "request_data_source", "feature_view_projection")),
    "LoggingConfig": (
        "destination",
        (
            "file_destination",
            "bigquery_destination",
            "redshift_destination",
            "snowflake_destination",
            "custom_destination",
            "athena_destination",
            "couchbase_columnar_destination",
        ),
    ),
    "StreamFormat": ("format", ("avro_format", "proto_format", "json_format")),
    "Policy": (
        "policy_type",
        ("role_based_policy", "group_based_policy", "namespace_based_policy", "combined_group_namespace_policy"),
    ),
}
_SCALARS = {
    "string": descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
    "bytes": descriptor_pb2.FieldDescriptorProto.TYPE_BYTES,
    "bool": descriptor_pb2.FieldDescriptorProto.TYPE_BOOL,
    "int32": descriptor_pb2.FieldDescriptorProto.TYPE_INT32,
    "int64": descriptor_pb2.FieldDescriptorProto.TYPE_INT64,
    "float": descriptor_pb2.FieldDescriptorProto.TYPE_FLOAT,
}
_F = descriptor_pb2.FieldDescriptorProto


def _add_field(message: Any, name: str, number: int, kind: str, repeated: bool) -> Any:
    field = message.field.add(name=name, number=number)
    field.label = _F.LABEL_REPEATED if repeated or kind == "map" else _F.LABEL_OPTIONAL
    if kind == "map":
        entry = message.nested_type.add(name="".join(p.title() for p in name.split("_")) + "Entry")
        entry.options.map_entry = True
        for sub, num in (("key", 1), ("value", 2)):
            entry.field.add(name=sub, number=num, type=_F.TYPE_STRING, label=_F.LABEL_OPTIONAL)
        field.type = _F.TYPE_MESSAGE
        field.type_name = f".{PACKAGE}.{message.name}.{entry.name}"
    elif kind in _SCALARS:
        field.type = _SCALARS[kind]
    else:
        field.type = _F.TYPE_MESSAGE
        field.type_name = f".{PACKAGE}.{kind}"
    return field


@cache
def _classes() -> dict[str, Any]:
    file = descriptor_pb2.FileDescriptorProto(name="ladle_feast_registry.proto", package=PACKAGE, syntax="proto3")
    for name, fields in _MESSAGES.items():
        message = file.message_type.add(name=name)
        oneof = _ONEOFS.get(name)
        if oneof is not None:
            message.oneof_decl.add(name=oneof[0])
        for fname, number, kind, repeated in fields:
            field = _add_field(message, fname, number, kind, repeated)
            if oneof is not None and fname in oneof[1]:
                field.oneof_index = 0
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return {n: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{PACKAGE}.{n}")) for n in _MESSAGES}


def message_class(name: str) -> Any:
    """The message class ``name`` (e.g. ``"Registry"``, ``"FeatureView"``)."""
    return _classes()[name]


def parse(name: str, data: bytes) -> Any:
    """Decode ``data`` as message ``name``."""
    message = message_class(name)()
    message.ParseFromString(data)
    return message


def declared_fields() -> dict[str, list[Field]]:
    """The declared messages and fields (the test compares them with Feast's own descriptors)."""
    return {k: list(v) for k, v in _MESSAGES.items()}
