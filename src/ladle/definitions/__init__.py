"""Definitions users write in a feature repo, with Feast's names and semantics."""

from __future__ import annotations

from ladle.definitions.entity import Entity
from ladle.definitions.feature_logging import (
    DorisLoggingDestination,
    FileLoggingDestination,
    IcebergLoggingDestination,
    LoggingConfig,
)
from ladle.definitions.feature_service import FeatureService
from ladle.definitions.feature_view import FeatureView, FeatureViewProjection
from ladle.definitions.field import Field
from ladle.definitions.formats import AvroFormat, JsonFormat, StreamFormat
from ladle.definitions.on_demand import OnDemandFeatureView, on_demand_feature_view
from ladle.definitions.permission import (
    ALL_ACTIONS,
    ALL_RESOURCE_TYPES,
    CRUD,
    READ,
    WRITE,
    AllowAll,
    AllowAllPolicy,
    AuthzedAction,
    CombinedGroupNamespacePolicy,
    GroupBasedPolicy,
    NamespaceBasedPolicy,
    Permission,
    Policy,
    RoleBasedPolicy,
)
from ladle.definitions.sources import (
    DataSource,
    DorisSource,
    FileSource,
    IcebergSource,
    KafkaSource,
    PushSource,
    RequestSource,
    source_from_spec,
)
from ladle.definitions.stream_feature_view import Aggregation, StreamFeatureView, Udf, view_from_spec

Definition = Entity | DataSource | FeatureView | FeatureService | Permission | OnDemandFeatureView

__all__ = [
    "ALL_ACTIONS",
    "ALL_RESOURCE_TYPES",
    "CRUD",
    "READ",
    "WRITE",
    "Aggregation",
    "AllowAll",
    "AllowAllPolicy",
    "AuthzedAction",
    "AvroFormat",
    "CombinedGroupNamespacePolicy",
    "DataSource",
    "Definition",
    "DorisLoggingDestination",
    "DorisSource",
    "Entity",
    "FeatureService",
    "FeatureView",
    "FeatureViewProjection",
    "Field",
    "FileLoggingDestination",
    "FileSource",
    "GroupBasedPolicy",
    "IcebergLoggingDestination",
    "IcebergSource",
    "JsonFormat",
    "KafkaSource",
    "LoggingConfig",
    "NamespaceBasedPolicy",
    "OnDemandFeatureView",
    "Permission",
    "Policy",
    "PushSource",
    "RequestSource",
    "RoleBasedPolicy",
    "StreamFeatureView",
    "StreamFormat",
    "Udf",
    "on_demand_feature_view",
    "source_from_spec",
    "view_from_spec",
]
