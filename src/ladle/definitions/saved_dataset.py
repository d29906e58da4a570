"""Saved datasets and validation references (Feast's ``SavedDataset`` / ``ValidationReference``).

A :class:`SavedDataset` is a training set kept on storage (a Parquet file) and registered by name,
with what produced it (features, join keys, ``full_feature_names``) and its event-time range. A
:class:`ValidationReference` freezes a :class:`~ladle.offline.validation.Profile` of a saved
dataset (per column: null rate, min/max, mean and std, allowed categories) with the tolerances a
new frame is judged by. Both live in the registry (kinds ``saved_dataset`` and
``validation_reference``), versioned like every object, and are made by ``FeatureStore`` methods
rather than declared in repo files (a ``ladle apply`` leaves them alone).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ladle.definitions._common import check_name, check_tags
from ladle.errors import DefinitionError


@dataclass(frozen=True)
class SavedDatasetFileStorage:
    """Where a saved dataset's rows are: a Parquet file (relative paths are relative to the repo)."""

    path: str
    file_format: str = "parquet"

    def __post_init__(self) -> None:
        if not isinstance(self.path, str) or not self.path:
            raise DefinitionError("SavedDatasetFileStorage: path must be a non-empty string")
        if self.file_format != "parquet":
            raise DefinitionError(f"SavedDatasetFileStorage: file_format must be 'parquet', got {self.file_format!r}")

    def to_spec(self) -> dict[str, Any]:
        """JSON-ready spec."""
        return {"type": "file", "path": self.path, "file_format": self.file_format}

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> SavedDatasetFileStorage:
        """Rebuild from :meth:`to_spec` output."""
        return cls(spec["path"], spec.get("file_format", "parquet"))


@dataclass(frozen=True)
class SavedDataset:
    """A registered training set (see the module docstring)."""

    name: str
    features: tuple[str, ...]
    join_keys: tuple[str, ...]
    storage: SavedDatasetFileStorage
    full_feature_names: bool = False
    feature_service_name: str | None = None
    min_event_timestamp: datetime | None = None
    max_event_timestamp: datetime | None = None
    row_count: int = 0
    tags: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_name("saved dataset", self.name)
        object.__setattr__(self, "tags", check_tags("saved dataset", self.name, self.tags))

    def to_spec(self) -> dict[str, Any]:
        """JSON-ready spec as stored in the registry."""
        return {
            "name": self.name,
            "features": list(self.features),
            "join_keys": list(self.join_keys),
            "storage": self.storage.to_spec(),
            "full_feature_names": self.full_feature_names,
            "feature_service_name": self.feature_service_name,
            "min_event_timestamp": _iso(self.min_event_timestamp),
            "max_event_timestamp": _iso(self.max_event_timestamp),
            "row_count": self.row_count,
            "tags": dict(sorted(self.tags.items())),
        }

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> SavedDataset:
        """Rebuild from :meth:`to_spec` output."""
        return cls(
            name=spec["name"],
            features=tuple(spec["features"]),
            join_keys=tuple(spec.get("join_keys", ())),
            storage=SavedDatasetFileStorage.from_spec(spec["storage"]),
            full_feature_names=spec.get("full_feature_names", False),
            feature_service_name=spec.get("feature_service_name"),
            min_event_timestamp=_parse(spec.get("min_event_timestamp")),
            max_event_timestamp=_parse(spec.get("max_event_timestamp")),
            row_count=spec.get("row_count", 0),
            tags=spec.get("tags", {}),
        )


@dataclass(frozen=True)
class Tolerances:
    """How far a validated frame may stray from the reference profile.

    ``null_rate``: absolute increase of a column's null rate allowed; ``range``: widening of
    [min, max] as a fraction of the reference's span; ``mean_stds``: how many reference standard
    deviations the mean may move; ``std_ratio``: the std may shrink or grow by this factor;
    ``categories``: whether unseen values of a categorical column fail.
    """

    null_rate: float = 0.05
    range: float = 0.0
    mean_stds: float = 1.0
    std_ratio: float = 2.0
    categories: bool = True

    def __post_init__(self) -> None:
        if min(self.null_rate, self.range, self.mean_stds) < 0 or self.std_ratio < 1:
            raise DefinitionError("Tolerances: null_rate, range and mean_stds must be >= 0 and std_ratio >= 1")

    def to_spec(self) -> dict[str, Any]:
        """JSON-ready spec."""
        return {"null_rate": self.null_rate, "range": self.range, "mean_stds": self.mean_stds,
                "std_ratio": self.std_ratio, "categories": self.categories}  # fmt: skip


@dataclass(frozen=True)
class ValidationReference:
    """A frozen profile of a saved dataset and the tolerances to judge new frames by."""

    name: str
    dataset_name: str
    profile: Mapping[str, Mapping[str, Any]]
    tolerances: Tolerances = Tolerances()
    description: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_name("validation reference", self.name)
        object.__setattr__(self, "tags", check_tags("validation reference", self.name, self.tags))

    @property
    def columns(self) -> Sequence[str]:
        """The profiled columns."""
        return list(self.profile)

    def to_spec(self) -> dict[str, Any]:
        """JSON-ready spec as stored in the registry."""
        return {
            "name": self.name,
            "dataset_name": self.dataset_name,
            "profile": {k: dict(v) for k, v in self.profile.items()},
            "tolerances": self.tolerances.to_spec(),
            "description": self.description,
            "tags": dict(sorted(self.tags.items())),
        }

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> ValidationReference:
        """Rebuild from :meth:`to_spec` output."""
        return cls(
            name=spec["name"],
            dataset_name=spec["dataset_name"],
            profile=spec["profile"],
            tolerances=Tolerances(**spec.get("tolerances", {})),
            description=spec.get("description", ""),
            tags=spec.get("tags", {}),
        )


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _parse(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None
