"""Which ``feast`` modules Ladle provides while it loads a feature repo, and what each holds.

Values are either objects (the adapters of :mod:`ladle.feast_shim.definitions`, Ladle's dtypes) or
``"module:attribute"`` strings resolved on first access. The strings let this table name objects
that live in optional parts of Ladle (on-demand feature views, saved datasets): a repo that never
uses them never imports them, and one that does gets a one-line error when they are absent.
"""

from __future__ import annotations

from ladle import types as lt
from ladle.feast_shim import definitions as fd

_WAREHOUSE = (
    "Ladle's offline stores are Parquet files (DuckDB), Iceberg and Doris; use FileSource, IcebergSource or DorisSource"
)

#: Feast names that import fine and refuse on use, with the reason.
REFUSED: dict[str, str] = {
    "BigQuerySource": _WAREHOUSE,
    "RedshiftSource": _WAREHOUSE,
    "SnowflakeSource": _WAREHOUSE,
    "AthenaSource": _WAREHOUSE,
    "SparkSource": _WAREHOUSE,
    "TrinoSource": _WAREHOUSE,
    "PostgreSQLSource": _WAREHOUSE,
    "MsSqlServerSource": _WAREHOUSE,
    "ClickhouseSource": _WAREHOUSE,
    "CouchbaseColumnarSource": _WAREHOUSE,
    "KinesisSource": "Ladle reads streams from Kafka (KafkaSource) or pushes (PushSource)",
    "ValidationReference": "validation references are not part of Ladle's registry",
}

_TYPES: dict[str, object] = {
    "Bytes": lt.Bytes,
    "String": lt.String,
    "Int32": lt.Int32,
    "Int64": lt.Int64,
    "Float32": lt.Float32,
    "Float64": lt.Float64,
    "Bool": lt.Bool,
    "UnixTimestamp": lt.UnixTimestamp,
    "Array": lt.Array,
    "Map": lt.Map,
    "Json": lt.Json,
    "Struct": lt.Struct,
    "ValueType": lt.ValueType,
}
#: dtypes of feast.types that Ladle has no column type for.
REFUSED_TYPES = ("Invalid", "Set", "PdfBytes", "ImageBytes", "Uuid", "TimeUuid", "Decimal")

_ON_DEMAND = {
    "OnDemandFeatureView": "ladle.definitions.on_demand:OnDemandFeatureView",
    "on_demand_feature_view": "ladle.definitions.on_demand:on_demand_feature_view",
}
_REQUEST = {"RequestSource": "ladle.definitions.sources:RequestSource"}
_SAVED = {
    "SavedDataset": "ladle.definitions.saved_dataset:SavedDataset",
    "SavedDatasetFileStorage": "ladle.definitions.saved_dataset:SavedDatasetFileStorage",
}
_PERMISSIONS_POLICY = {
    n: f"ladle.definitions:{n}"
    for n in ("AllowAll", "RoleBasedPolicy", "GroupBasedPolicy", "NamespaceBasedPolicy", "CombinedGroupNamespacePolicy")
}
_PERMISSIONS_POLICY["Policy"] = "ladle.definitions:Policy"
_ACTIONS = {n: f"ladle.definitions:{n}" for n in ("AuthzedAction", "READ", "WRITE", "CRUD", "ALL_ACTIONS")}

_ROOT: dict[str, object] = {
    "Entity": fd.Entity,
    "Field": fd.Field,
    "FeatureView": fd.FeatureView,
    "BatchFeatureView": fd.BatchFeatureView,
    "StreamFeatureView": fd.StreamFeatureView,
    "FeatureService": fd.FeatureService,
    "FileSource": fd.FileSource,
    "PushSource": fd.PushSource,
    "KafkaSource": fd.KafkaSource,
    "Project": fd.Project,
    "ConflictPolicy": fd.ConflictPolicy,
    "LabelView": fd.LabelView,
    "ValueType": lt.ValueType,
    "Aggregation": "ladle.definitions:Aggregation",
    "FeatureStore": "ladle.store:FeatureStore",
    "RepoConfig": "ladle.config:RepoConfig",
    **_ON_DEMAND,
    **_REQUEST,
    **_SAVED,
}

#: Feast module name -> the names it provides (objects or lazy ``module:attribute`` strings).
MODULES: dict[str, dict[str, object]] = {
    "feast": _ROOT,
    "feast.types": _TYPES,
    "feast.value_type": {"ValueType": lt.ValueType},
    "feast.field": {"Field": fd.Field},
    "feast.entity": {"Entity": fd.Entity},
    "feast.feature_view": {"FeatureView": fd.FeatureView},
    "feast.batch_feature_view": {"BatchFeatureView": fd.BatchFeatureView},
    "feast.stream_feature_view": {
        "StreamFeatureView": fd.StreamFeatureView,
        "stream_feature_view": fd.stream_feature_view,
    },
    "feast.on_demand_feature_view": dict(_ON_DEMAND),
    "feast.feature_service": {"FeatureService": fd.FeatureService},
    "feast.aggregation": {"Aggregation": "ladle.definitions:Aggregation"},
    "feast.project": {"Project": fd.Project},
    "feast.labeling": {"LabelView": fd.LabelView, "ConflictPolicy": fd.ConflictPolicy},
    "feast.labeling.label_view": {"LabelView": fd.LabelView},
    "feast.labeling.conflict_policy": {"ConflictPolicy": fd.ConflictPolicy},
    "feast.data_source": {
        "DataSource": "ladle.definitions:DataSource",
        "PushSource": fd.PushSource,
        "KafkaSource": fd.KafkaSource,
        "PushMode": fd.PushMode,
        **_REQUEST,
    },
    "feast.data_format": {
        "ParquetFormat": fd.ParquetFormat,
        "DeltaFormat": fd.DeltaFormat,
        "ProtoFormat": fd.ProtoFormat,
        "JsonFormat": "ladle.definitions:JsonFormat",
        "AvroFormat": "ladle.definitions:AvroFormat",
    },
    "feast.feature_logging": {"LoggingConfig": "ladle.definitions.feature_logging:LoggingConfig"},
    "feast.infra.offline_stores.file_source": {
        "FileSource": fd.FileSource,
        "FileLoggingDestination": "ladle.definitions.feature_logging:FileLoggingDestination",
        "SavedDatasetFileStorage": _SAVED["SavedDatasetFileStorage"],
    },
    "feast.saved_dataset": dict(_SAVED),
    "feast.permissions.permission": {"Permission": "ladle.definitions:Permission"},
    "feast.permissions.action": dict(_ACTIONS),
    "feast.permissions.policy": dict(_PERMISSIONS_POLICY),
    "feast.repo_config": {"RepoConfig": "ladle.config:RepoConfig"},
    "feast.feature_store": {"FeatureStore": "ladle.store:FeatureStore"},
}


def packages() -> set[str]:
    """Every dotted prefix of a provided module (each becomes a package so submodules import)."""
    out: set[str] = set()
    for name in MODULES:
        parts = name.split(".")
        out.update(".".join(parts[:i]) for i in range(1, len(parts)))
    return out
