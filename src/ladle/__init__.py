"""Ladle: a real-time feature store, Feast-compatible and fast.

>>> from ladle import FeatureStore
>>> store = FeatureStore(repo_path="feature_repo")

Names are imported on first use (PEP 562 ``__getattr__``), so ``import ladle`` and the CLI start
without loading pandas, pyarrow, DuckDB or SQLAlchemy; ``from ladle import X`` works as usual.
"""

from __future__ import annotations

import importlib
import typing

if typing.TYPE_CHECKING:
    from ladle.client import RemoteClient
    from ladle.config import RepoConfig
    from ladle.definitions import (
        ALL_ACTIONS,
        ALL_RESOURCE_TYPES,
        CRUD,
        READ,
        WRITE,
        Aggregation,
        AllowAll,
        AllowAllPolicy,
        AuthzedAction,
        AvroFormat,
        CombinedGroupNamespacePolicy,
        DorisSource,
        Entity,
        FeatureService,
        FeatureView,
        FeatureViewProjection,
        Field,
        FileLoggingDestination,
        FileSource,
        GroupBasedPolicy,
        IcebergSource,
        JsonFormat,
        KafkaSource,
        LoggingConfig,
        NamespaceBasedPolicy,
        OnDemandFeatureView,
        Permission,
        PushSource,
        RequestSource,
        RoleBasedPolicy,
        StreamFeatureView,
        on_demand_feature_view,
    )
    from ladle.retrieval.response import OnlineResponse
    from ladle.store import FeatureStore
    from ladle.types import (
        Array,
        Bool,
        Bytes,
        FieldStatus,
        Float32,
        Float64,
        Int32,
        Int64,
        Json,
        Map,
        String,
        Struct,
        UnixTimestamp,
        ValueType,
    )

__version__ = "0.1.0"

__all__ = [
    "ALL_ACTIONS",
    "ALL_RESOURCE_TYPES",
    "Aggregation",
    "AllowAll",
    "AllowAllPolicy",
    "Array",
    "AuthzedAction",
    "AvroFormat",
    "Bool",
    "Bytes",
    "CRUD",
    "CombinedGroupNamespacePolicy",
    "DorisSource",
    "Entity",
    "FeatureService",
    "FeatureStore",
    "FeatureView",
    "FeatureViewProjection",
    "Field",
    "FieldStatus",
    "FileLoggingDestination",
    "FileSource",
    "Float32",
    "Float64",
    "GroupBasedPolicy",
    "IcebergSource",
    "Int32",
    "Int64",
    "Json",
    "JsonFormat",
    "KafkaSource",
    "LoggingConfig",
    "Map",
    "NamespaceBasedPolicy",
    "OnDemandFeatureView",
    "OnlineResponse",
    "Permission",
    "PushSource",
    "READ",
    "RemoteClient",
    "RepoConfig",
    "RequestSource",
    "RoleBasedPolicy",
    "StreamFeatureView",
    "String",
    "Struct",
    "UnixTimestamp",
    "ValueType",
    "WRITE",
    "__version__",
    "on_demand_feature_view",
]

_HOME = {
    "RepoConfig": "ladle.config",
    "Entity": "ladle.definitions",
    "FeatureService": "ladle.definitions",
    "FeatureView": "ladle.definitions",
    "FeatureViewProjection": "ladle.definitions",
    "Field": "ladle.definitions",
    "FileSource": "ladle.definitions",
    "FileLoggingDestination": "ladle.definitions",
    "LoggingConfig": "ladle.definitions",
    "PushSource": "ladle.definitions",
    "IcebergSource": "ladle.definitions",
    "DorisSource": "ladle.definitions",
    "Aggregation": "ladle.definitions",
    "AvroFormat": "ladle.definitions",
    "JsonFormat": "ladle.definitions",
    "KafkaSource": "ladle.definitions",
    "StreamFeatureView": "ladle.definitions",
    "ALL_ACTIONS": "ladle.definitions",
    "ALL_RESOURCE_TYPES": "ladle.definitions",
    "CRUD": "ladle.definitions",
    "READ": "ladle.definitions",
    "WRITE": "ladle.definitions",
    "AllowAll": "ladle.definitions",
    "AllowAllPolicy": "ladle.definitions",
    "AuthzedAction": "ladle.definitions",
    "CombinedGroupNamespacePolicy": "ladle.definitions",
    "GroupBasedPolicy": "ladle.definitions",
    "NamespaceBasedPolicy": "ladle.definitions",
    "Permission": "ladle.definitions",
    "RoleBasedPolicy": "ladle.definitions",
    "OnDemandFeatureView": "ladle.definitions",
    "RequestSource": "ladle.definitions",
    "on_demand_feature_view": "ladle.definitions",
    "OnlineResponse": "ladle.retrieval.response",
    "RemoteClient": "ladle.client",
    "FeatureStore": "ladle.store",
    **dict.fromkeys(
        [
            "Array",
            "Bool",
            "Bytes",
            "FieldStatus",
            "Float32",
            "Float64",
            "Int32",
            "Int64",
            "Json",
            "Map",
            "String",
            "Struct",
            "UnixTimestamp",
            "ValueType",
        ],
        "ladle.types",
    ),
}


def __getattr__(name: str) -> typing.Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'ladle' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
