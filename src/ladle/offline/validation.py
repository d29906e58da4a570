"""A self-contained dataset profiler and validator (what Feast delegated to Great Expectations).

:func:`profile_frame` records, per column: its kind, null rate and row count; for numbers min,
max, mean and std; for text with at most :data:`MAX_CATEGORIES` distinct values, those values.
:func:`validate_frame` checks a new frame against a :class:`ValidationReference` and returns a
:class:`ValidationReport`; :func:`check` raises :class:`~ladle.errors.ValidationFailed` (holding
the report) when anything fails.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ladle.errors import ValidationFailed

if TYPE_CHECKING:
    import pandas as pd

    from ladle.definitions.saved_dataset import ValidationReference

#: Text columns with more distinct values than this are not profiled as categories.
MAX_CATEGORIES = 50


def profile_frame(frame: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """The profile of every column of ``frame`` (JSON-ready)."""
    import pandas as pd

    out: dict[str, dict[str, Any]] = {}
    rows = len(frame)
    for name in frame.columns:
        col = frame[name]
        nulls = int(col.isna().sum())
        entry: dict[str, Any] = {"rows": rows, "null_rate": nulls / rows if rows else 0.0}
        values = col.dropna()
        if pd.api.types.is_bool_dtype(col):
            entry["kind"] = "bool"
        elif pd.api.types.is_numeric_dtype(col):
            entry["kind"] = "number"
            if len(values):
                entry.update(min=float(values.min()), max=float(values.max()), mean=float(values.mean()),
                             std=float(values.std(ddof=0)))  # fmt: skip
        elif pd.api.types.is_datetime64_any_dtype(col):
            entry["kind"] = "timestamp"
            if len(values):
                entry.update(min=values.min().isoformat(), max=values.max().isoformat())
        else:
            entry["kind"] = "text"
            distinct = values.astype(str).unique()
            if len(distinct) <= MAX_CATEGORIES:
                entry["categories"] = sorted(distinct.tolist())
        out[str(name)] = entry
    return out


@dataclass(frozen=True)
class Finding:
    """One failed check: which column, which check, what the reference allows, what was found."""

    column: str
    check: str
    expected: str
    found: str

    def __str__(self) -> str:
        return f"{self.column}: {self.check} expected {self.expected}, found {self.found}"


@dataclass(frozen=True)
class ValidationReport:
    """The outcome of validating a frame: ``ok`` when no check failed."""

    reference: str
    rows: int
    findings: tuple[Finding, ...]

    @property
    def ok(self) -> bool:
        """Whether every check passed."""
        return not self.findings

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the CLI prints it)."""
        return {"reference": self.reference, "rows": self.rows, "ok": self.ok,
                "findings": [f.__dict__ for f in self.findings]}  # fmt: skip

    def __str__(self) -> str:
        head = f"validation against '{self.reference}' ({self.rows} rows): "
        if self.ok:
            return head + "ok"
        return head + f"{len(self.findings)} check(s) failed: " + "; ".join(map(str, self.findings))


def validate_frame(frame: pd.DataFrame, reference: ValidationReference) -> ValidationReport:
    """Check ``frame`` against ``reference``'s profile and tolerances."""
    tol = reference.tolerances
    found = profile_frame(frame)
    findings: list[Finding] = []
    for name, ref in reference.profile.items():
        new = found.get(name)
        if new is None:
            findings.append(Finding(name, "column", "present", "missing"))
            continue
        limit = ref["null_rate"] + tol.null_rate
        if new["null_rate"] > limit + 1e-12:
            findings.append(Finding(name, "null rate", f"<= {limit:.4g}", f"{new['null_rate']:.4g}"))
        if ref["kind"] == "number" and "mean" in ref and "mean" in new:
            findings += _numeric(name, ref, new, tol.range, tol.mean_stds, tol.std_ratio)
        if tol.categories and "categories" in ref and new["kind"] == "text":
            unseen = sorted(set(new.get("categories") or _all_values(frame, name)) - set(ref["categories"]))
            if unseen:
                findings.append(Finding(name, "categories", f"within {len(ref['categories'])} known values",
                                        f"unseen {unseen[:5]}"))  # fmt: skip
    return ValidationReport(reference.name, len(frame), tuple(findings))


def _all_values(frame: pd.DataFrame, name: str) -> list[str]:
    return [str(v) for v in frame[name].dropna().astype(str).unique()]


def _numeric(
    name: str, ref: Mapping[str, Any], new: Mapping[str, Any], widen: float, stds: float, ratio: float
) -> list[Finding]:
    out = []
    span = ref["max"] - ref["min"]
    low, high = ref["min"] - widen * span, ref["max"] + widen * span
    if new["min"] < low - 1e-12 or new["max"] > high + 1e-12:
        out.append(Finding(name, "range", f"[{low:.6g}, {high:.6g}]", f"[{new['min']:.6g}, {new['max']:.6g}]"))
    allowed = stds * ref["std"]
    if abs(new["mean"] - ref["mean"]) > allowed + 1e-12:
        out.append(Finding(name, "mean", f"{ref['mean']:.6g} ± {allowed:.6g}", f"{new['mean']:.6g}"))
    if ref["std"] > 0 and not (ref["std"] / ratio - 1e-12 <= new["std"] <= ref["std"] * ratio + 1e-12):
        out.append(Finding(name, "std", f"[{ref['std'] / ratio:.6g}, {ref['std'] * ratio:.6g}]", f"{new['std']:.6g}"))
    if math.isnan(new["mean"]):
        out.append(Finding(name, "mean", "a number", "NaN"))
    return out


def check(frame: pd.DataFrame, reference: ValidationReference | None) -> pd.DataFrame:
    """``frame`` if it passes ``reference`` (or there is none); else :class:`ValidationFailed`."""
    if reference is None:
        return frame
    report = validate_frame(frame, reference)
    if not report.ok:
        raise ValidationFailed(report)
    return frame
