"""Drift: compare a window of served or materialized values with a saved baseline, feature by feature.

For each feature of the baseline (see :mod:`ladle.monitor.baseline`):

* numeric: PSI over the baseline's quantile bins, the two-sample Kolmogorov-Smirnov statistic D
  (and its p-value) against the baseline's sample, the share of values outside the baseline range;
* categorical: PSI and the chi-square p-value over the baseline's top categories plus ``other``;
* both: the null rate before and now.

A feature *breaches* when any judged score crosses its threshold (:class:`Thresholds`); a window
with fewer than ``min_rows`` values is reported but not judged. Thresholds come from the
``monitoring:`` config block, overridden by tags ``drift.<name>`` on the feature view (every
feature of it) and on the feature's ``Field`` (that feature); ``off`` disables one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np
import pyarrow as pa

from ladle.config import MonitoringConfig
from ladle.definitions import FeatureView
from ladle.errors import DefinitionError
from ladle.monitor.baseline import FeatureProfile, numeric_values
from ladle.monitor.drift_stats import chi2_homogeneity, ks_2samp, psi

TAG_PREFIX = "drift."


@dataclass(frozen=True)
class Thresholds:
    """When a feature's drift is a breach; None turns a check off."""

    psi: float | None = 0.2
    ks: float | None = 0.1
    chi2_p: float | None = None
    null_rate: float | None = 0.05
    out_of_range: float | None = 0.05
    min_rows: int = 30

    @classmethod
    def from_config(cls, config: MonitoringConfig) -> Thresholds:
        """The project defaults (``monitoring:`` block)."""
        return cls(
            config.drift_psi, config.drift_ks, config.drift_chi2_p, config.drift_null_rate,
            config.drift_out_of_range, config.drift_min_rows,
        )  # fmt: skip

    def with_tags(self, tags: Mapping[str, str], where: str) -> Thresholds:
        """These thresholds overridden by ``drift.<name>`` tags (``off`` = None)."""
        changes: dict[str, Any] = {}
        names = {f.name for f in fields(self)}
        for key, raw in tags.items():
            if not key.startswith(TAG_PREFIX):
                continue
            name = key[len(TAG_PREFIX) :]
            if name not in names:
                raise DefinitionError(
                    f"{where}: unknown drift threshold tag '{key}'; use one of drift.{', drift.'.join(sorted(names))}"
                )
            changes[name] = _tag_value(name, raw, where)
        return replace(self, **changes) if changes else self

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (as in report payloads)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _tag_value(name: str, raw: str, where: str) -> float | int | None:
    text = raw.strip().lower()
    if text in {"off", "none", "null", ""}:
        if name == "min_rows":
            raise DefinitionError(f"{where}: drift.min_rows cannot be off")
        return None
    try:
        return int(text) if name == "min_rows" else float(text)
    except ValueError:
        raise DefinitionError(f"{where}: tag drift.{name}={raw!r} is not a number (or 'off')") from None


def thresholds_for(defaults: Thresholds, view: FeatureView | None, feature: str) -> Thresholds:
    """The thresholds of one feature: defaults, then the view's tags, then the field's tags."""
    if view is None:
        return defaults
    out = defaults.with_tags(view.tags, f"feature view '{view.name}'")
    for f in view.features:
        if f.name == feature:
            out = out.with_tags(f.tags, f"feature '{view.name}:{feature}'")
    return out


def compare_feature(
    profile: FeatureProfile, values: pa.Array | pa.ChunkedArray, thresholds: Thresholds
) -> dict[str, Any]:
    """One feature's drift entry of a report payload (see docs/monitoring.md for every key)."""
    counts, present, nulls = profile.bin_counts(values)
    total = present + nulls
    current_null_rate = nulls / total if total else 0.0
    entry: dict[str, Any] = {
        "type": profile.type,
        "psi": psi(profile.counts, counts) if present else None,
        "ks": None,
        "ks_p": None,
        "chi2_p": None,
        "null_rate": {"baseline": profile.null_rate, "current": current_null_rate},
        "range": {"baseline": list(profile.range) if profile.range else None, "current": None},
        "out_of_range": None,
        "count": {"baseline": profile.count, "current": present},
        "thresholds": thresholds.to_dict(),
    }
    if profile.type == "numeric":
        arr = numeric_values(values)
        if arr.size:
            entry["range"]["current"] = [float(arr.min()), float(arr.max())]
            d, p = ks_2samp(np.asarray(profile.sample, dtype=np.float64), arr)
            entry["ks"], entry["ks_p"] = d, p
            if profile.range is not None:
                lo, hi = profile.range
                entry["out_of_range"] = float(np.mean((arr < lo) | (arr > hi)))
        entry["bins"] = {
            "edges": _outer_edges(profile),
            "baseline": _shares(profile.counts),
            "current": _shares(counts),
        }
    else:
        if present:
            entry["chi2_p"] = chi2_homogeneity(profile.counts, counts)[1]
        entry["bins"] = {
            "categories": [*profile.categories, "__other__"],
            "baseline": _shares(profile.counts),
            "current": _shares(counts),
        }
    judged = total >= thresholds.min_rows
    breaches = _breaches(entry, thresholds) if judged else []
    entry.update(judged=judged, breaches=breaches, breach=bool(breaches))
    return entry


def _breaches(entry: Mapping[str, Any], t: Thresholds) -> list[str]:
    out = []
    if t.psi is not None and entry["psi"] is not None and entry["psi"] > t.psi:
        out.append("psi")
    if t.ks is not None and entry["ks"] is not None and entry["ks"] > t.ks:
        out.append("ks")
    if t.chi2_p is not None and entry["chi2_p"] is not None and entry["chi2_p"] < t.chi2_p:
        out.append("chi2_p")
    rates = entry["null_rate"]
    if t.null_rate is not None and abs(rates["current"] - rates["baseline"]) > t.null_rate:
        out.append("null_rate")
    if t.out_of_range is not None and entry["out_of_range"] is not None and entry["out_of_range"] > t.out_of_range:
        out.append("out_of_range")
    return out


def _outer_edges(profile: FeatureProfile) -> list[float]:
    """Bin edges for plotting: the baseline's min, the interior edges, its max (outer bins are open)."""
    if profile.range is None:
        return list(profile.edges)
    return [profile.range[0], *profile.edges, profile.range[1]]


def _shares(counts: list[int]) -> list[float]:
    total = sum(counts)
    return [c / total if total else 0.0 for c in counts]


def scores(entry: Mapping[str, Any]) -> dict[str, float]:
    """The numeric scores of one feature entry, by metric label (for ``ladle_feature_drift_score``)."""
    out: dict[str, float] = {}
    for key in ("psi", "ks", "chi2_p", "out_of_range"):
        if entry.get(key) is not None:
            out[key] = float(entry[key])
    rates = entry["null_rate"]
    out["null_rate_delta"] = abs(float(rates["current"]) - float(rates["baseline"]))
    return out
