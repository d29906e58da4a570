"""Field-by-field differences between two versions of a definition's spec.

Specs are compared as JSON trees: nested mappings by key (``source.path``), lists of named
items by name (``features.price.dtype``), anything else as a whole value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from ladle.registry.base import Kind

Action = Literal["add", "change", "remove"]
_SIGN: dict[Action, str] = {"add": "+", "change": "~", "remove": "-"}


class _Missing:
    """Marks a key or list item that exists on one side only."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


@dataclass(frozen=True)
class FieldChange:
    """One spec key whose value differs: ``path`` in dotted form, old and new values."""

    path: str
    old: Any
    new: Any

    def __str__(self) -> str:
        if self.old is MISSING:
            return f"{self.path} added ({format_value(self.new)})"
        if self.new is MISSING:
            return f"{self.path} removed"
        return f"{self.path} {format_value(self.old)} → {format_value(self.new)}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (absent sides are ``null``)."""
        return {
            "path": self.path,
            "old": None if self.old is MISSING else self.old,
            "new": None if self.new is MISSING else self.new,
        }


@dataclass(frozen=True)
class ObjectDiff:
    """What an apply does to one object: add it, change some of its keys, or remove it."""

    kind: Kind
    name: str
    action: Action
    fields: tuple[FieldChange, ...] = ()

    def __str__(self) -> str:
        head = f"{_SIGN[self.action]} {self.kind} {self.name}"
        if self.action == "change" and self.fields:
            return f"{head}: " + "; ".join(str(f) for f in self.fields)
        return head

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "kind": self.kind,
            "name": self.name,
            "action": self.action,
            "fields": [f.to_dict() for f in self.fields],
        }


def format_value(value: Any) -> str:
    """A short, readable rendering of a spec value (``86400`` rather than ``86400.0``)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if value is None:
        return "null"
    if isinstance(value, str):
        return value if value else "''"
    if isinstance(value, Mapping):
        # A named item (field, projection) is shown under its name already.
        return ", ".join(f"{k}={format_value(v)}" for k, v in sorted(value.items()) if k != "name")
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def diff_specs(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[FieldChange]:
    """Every leaf that differs between two specs, in key order."""
    out: list[FieldChange] = []
    for key in sorted(set(old) | set(new)):
        path = f"{prefix}{key}"
        out.extend(_diff_value(path, old.get(key, MISSING), new.get(key, MISSING)))
    return out


def _diff_value(path: str, old: Any, new: Any) -> list[FieldChange]:
    if old == new:
        return []
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        return diff_specs(old, new, f"{path}.")
    old_items, new_items = _keyed(old), _keyed(new)
    if old_items is not None and new_items is not None:
        out: list[FieldChange] = []
        for key in [*old_items, *(k for k in new_items if k not in old_items)]:
            out.extend(_diff_value(f"{path}.{key}", old_items.get(key, MISSING), new_items.get(key, MISSING)))
        if not out:
            # Same items in a different order: schema order matters (it is the column order).
            out.append(FieldChange(f"{path} order", list(old_items), list(new_items)))
        return out
    return [FieldChange(path, old, new)]


def _keyed(value: Any) -> dict[str, Any] | None:
    """A list of named mappings (fields, projections) as ``{name: item}``; None otherwise."""
    if not isinstance(value, Sequence) or isinstance(value, str):
        return None
    out: dict[str, Any] = {}
    for item in value:
        if not isinstance(item, Mapping):
            return None
        key = item.get("name") or item.get("alias") or item.get("view")
        if not isinstance(key, str) or key in out:
            return None
        out[key] = item
    return out
