"""Drift baselines: the distribution of each feature in a training set, kept to compare later windows with.

A :class:`Baseline` holds one :class:`FeatureProfile` per feature, keyed by its reference
``view:feature``:

* numeric features (integers, floats, decimals): quantile bin edges of the training values
  (``bins`` of them, fewer when values repeat), the count per bin, the range, and a seeded random
  sample of the values (at most ``sample_size``) for the Kolmogorov-Smirnov test;
* categorical features (strings, booleans): the ``top_k`` most frequent values and their counts,
  every other value counted in one ``other`` bucket;
* for both, the number of values and of nulls.

Bins are open at both ends: the first holds everything below the first interior edge, the last
everything from the last interior edge up, so later values outside the training range still land
somewhere (and count in the range check).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ladle.errors import RequestError

FeatureType = Literal["numeric", "categorical"]
#: The bucket of categorical values outside the baseline's top categories.
OTHER = "__other__"

DEFAULT_BINS = 10
DEFAULT_TOP_K = 20
DEFAULT_SAMPLE_SIZE = 2000


@dataclass(frozen=True)
class FeatureProfile:
    """One feature's distribution in a baseline (see the module docstring)."""

    type: FeatureType
    count: int
    nulls: int
    counts: list[int]
    edges: list[float] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    range: tuple[float, float] | None = None
    sample: list[float] = field(default_factory=list)

    @property
    def null_rate(self) -> float:
        """Share of null values (0 when there were no rows)."""
        total = self.count + self.nulls
        return self.nulls / total if total else 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "type": self.type,
            "count": self.count,
            "nulls": self.nulls,
            "counts": list(self.counts),
            "edges": list(self.edges),
            "categories": list(self.categories),
            "range": list(self.range) if self.range is not None else None,
            "sample": list(self.sample),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureProfile:
        """Rebuild from :meth:`to_dict` output."""
        rng = data.get("range")
        return cls(
            type=data["type"],
            count=int(data["count"]),
            nulls=int(data["nulls"]),
            counts=[int(c) for c in data["counts"]],
            edges=[float(e) for e in data.get("edges", [])],
            categories=[str(c) for c in data.get("categories", [])],
            range=(float(rng[0]), float(rng[1])) if rng is not None else None,
            sample=[float(v) for v in data.get("sample", [])],
        )

    def bin_counts(self, values: pa.Array | pa.ChunkedArray) -> tuple[list[int], int, int]:
        """``(counts in this profile's bins, non-null count, null count)`` of other values."""
        nulls = int(values.null_count)
        present = pc.drop_null(values)
        if self.type == "numeric":
            arr = numeric_values(present)
            index = np.searchsorted(np.asarray(self.edges, dtype=np.float64), arr, side="right")
            counts = np.bincount(index, minlength=len(self.edges) + 1)
            return [int(c) for c in counts], int(arr.size), nulls + int(len(present) - arr.size)
        # Arrow's cast, as when profiling (Python's str() would turn booleans into 'True', not 'true').
        strings = [str(v) for v in present.cast(pa.string()).to_pylist()]
        slot = {c: i for i, c in enumerate(self.categories)}
        out = [0] * (len(self.categories) + 1)
        for value in strings:
            out[slot.get(value, len(self.categories))] += 1
        return out, len(strings), nulls


@dataclass(frozen=True)
class Baseline:
    """A named set of feature profiles, taken from a training set."""

    name: str
    features: dict[str, FeatureProfile]
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    rows: int = 0
    source: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (as stored in the registry)."""
        return {
            "name": self.name,
            "created_at": self.created_at.isoformat(),
            "rows": self.rows,
            "source": dict(self.source),
            "features": {ref: p.to_dict() for ref, p in self.features.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Baseline:
        """Rebuild from :meth:`to_dict` output."""
        return cls(
            name=data["name"],
            features={ref: FeatureProfile.from_dict(p) for ref, p in data["features"].items()},
            created_at=datetime.fromisoformat(data["created_at"]),
            rows=int(data.get("rows", 0)),
            source=dict(data.get("source", {})),
        )

    @property
    def views(self) -> list[str]:
        """The feature views the baseline's features belong to, in first-seen order."""
        return list(dict.fromkeys(ref.split(":", 1)[0] for ref in self.features))


def feature_type(arrow_type: pa.DataType) -> FeatureType | None:
    """How a column of this Arrow type is profiled; None for types drift does not cover (lists, bytes, times)."""
    if pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type) or pa.types.is_decimal(arrow_type):
        return "numeric"
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type) or pa.types.is_boolean(arrow_type):
        return "categorical"
    return None


def numeric_values(values: pa.Array | pa.ChunkedArray) -> np.ndarray[Any, np.dtype[np.float64]]:
    """The non-null, non-NaN values as float64."""
    arr = np.asarray(pc.drop_null(values).cast(pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)
    return arr[~np.isnan(arr)]


def profile(
    values: pa.Array | pa.ChunkedArray,
    bins: int = DEFAULT_BINS,
    top_k: int = DEFAULT_TOP_K,
    sample_size: int = DEFAULT_SAMPLE_SIZE,
    seed: int = 0,
) -> FeatureProfile | None:
    """The profile of one column; None when its type is not covered (see :func:`feature_type`)."""
    kind = feature_type(values.type)
    if kind is None:
        return None
    nulls = int(values.null_count)
    if kind == "categorical":
        present = pc.drop_null(values)
        counted = pc.value_counts(present.cast(pa.string())).to_pylist()
        counted.sort(key=lambda vc: (-vc["counts"], str(vc["values"])))
        top = counted[:top_k]
        rest = sum(vc["counts"] for vc in counted[top_k:])
        return FeatureProfile(
            "categorical", len(present), nulls,
            counts=[int(vc["counts"]) for vc in top] + [int(rest)],
            categories=[str(vc["values"]) for vc in top],
        )  # fmt: skip
    arr = numeric_values(values)
    nulls += int(len(pc.drop_null(values)) - arr.size)  # NaN counts as null
    if arr.size == 0:
        return FeatureProfile("numeric", 0, nulls, counts=[0])
    quantiles = np.quantile(arr, np.linspace(0.0, 1.0, bins + 1)[1:-1])
    edges = sorted({float(q) for q in quantiles} - {float(arr.min())})
    index = np.searchsorted(np.asarray(edges, dtype=np.float64), arr, side="right")
    counts = np.bincount(index, minlength=len(edges) + 1)
    rng = np.random.default_rng(seed)
    sample = arr if arr.size <= sample_size else rng.choice(arr, size=sample_size, replace=False)
    return FeatureProfile(
        "numeric", int(arr.size), nulls,
        counts=[int(c) for c in counts], edges=edges,
        range=(float(arr.min()), float(arr.max())), sample=[float(v) for v in np.sort(sample)],
    )  # fmt: skip


def build_baseline(
    name: str,
    table: pa.Table,
    columns: Mapping[str, str],
    *,
    bins: int = DEFAULT_BINS,
    top_k: int = DEFAULT_TOP_K,
    sample_size: int = DEFAULT_SAMPLE_SIZE,
    source: Mapping[str, Any] | None = None,
) -> Baseline:
    """Profile ``table``'s columns; ``columns`` maps each column to profile to its ``view:feature`` reference.

    Raises :class:`RequestError` if a column is missing, the table is empty, or no column has a
    type drift covers.
    """
    if bins < 2 or top_k < 1 or sample_size < 10:
        raise RequestError(
            f"baseline needs bins >= 2, top_k >= 1, sample_size >= 10 (got {bins}, {top_k}, {sample_size})"
        )
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise RequestError(f"the training set has no column(s) {missing}; it has {table.column_names}")
    if table.num_rows == 0:
        raise RequestError(f"baseline '{name}': the training set is empty")
    features: dict[str, FeatureProfile] = {}
    for seed, (column, ref) in enumerate(columns.items()):
        found = profile(table.column(column), bins, top_k, sample_size, seed)
        if found is not None:
            features[ref] = found
    if not features:
        raise RequestError(f"baseline '{name}': none of {list(columns)} is numeric, string or boolean")
    return Baseline(name, features, rows=table.num_rows, source=dict(source or {}))
