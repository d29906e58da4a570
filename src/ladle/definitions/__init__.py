"""Definitions users write in a feature repo, with Feast's names and semantics."""

from __future__ import annotations

from ladle.definitions.entity import Entity
from ladle.definitions.feature_service import FeatureService
from ladle.definitions.feature_view import FeatureView, FeatureViewProjection
from ladle.definitions.field import Field
from ladle.definitions.sources import DataSource, FileSource, PushSource, source_from_spec

Definition = Entity | DataSource | FeatureView | FeatureService

__all__ = [
    "DataSource",
    "Definition",
    "Entity",
    "FeatureService",
    "FeatureView",
    "FeatureViewProjection",
    "Field",
    "FileSource",
    "PushSource",
    "source_from_spec",
]
