"""Ladle: a real-time feature store, Feast-compatible and fast.

>>> from ladle import FeatureStore
>>> store = FeatureStore(repo_path="feature_repo")
"""

from __future__ import annotations

from ladle.config import RepoConfig
from ladle.definitions import (
    Entity,
    FeatureService,
    FeatureView,
    FeatureViewProjection,
    Field,
    FileSource,
    PushSource,
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
    String,
    UnixTimestamp,
    ValueType,
)

__version__ = "0.1.0"

__all__ = [
    "Array",
    "Bool",
    "Bytes",
    "Entity",
    "FeatureService",
    "FeatureStore",
    "FeatureView",
    "FeatureViewProjection",
    "Field",
    "FieldStatus",
    "FileSource",
    "Float32",
    "Float64",
    "Int32",
    "Int64",
    "OnlineResponse",
    "PushSource",
    "RepoConfig",
    "String",
    "UnixTimestamp",
    "ValueType",
    "__version__",
]
