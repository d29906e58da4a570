"""Validation helpers shared by the definition classes."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ladle.errors import DefinitionError

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def check_name(kind: str, name: object) -> str:
    """Return ``name`` if it is a valid object name, else raise ``DefinitionError``."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise DefinitionError(
            f"{kind} name {name!r} is invalid: use letters, digits and '_', starting with a letter or '_'"
        )
    if name.startswith("__"):
        raise DefinitionError(f"{kind} name {name!r} is invalid: names starting with '__' are reserved")
    return name


def check_tags(kind: str, name: str, tags: Mapping[str, str] | None) -> dict[str, str]:
    """Copy ``tags`` after checking they map strings to strings."""
    if tags is None:
        return {}
    if not isinstance(tags, Mapping):
        raise DefinitionError(f"{kind} '{name}': tags must be a dict of str to str")
    out: dict[str, str] = {}
    for key, value in tags.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise DefinitionError(f"{kind} '{name}': tag {key!r}={value!r} must map a string to a string")
        out[key] = value
    return out


def check_str(kind: str, name: str, attr: str, value: object) -> str:
    """Return ``value`` if it is a string (used for description and owner)."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise DefinitionError(f"{kind} '{name}': {attr} must be a string, got {type(value).__name__}")
    return value


def common_spec(obj: Any) -> dict[str, Any]:
    """The metadata every definition carries, in spec form."""
    return {"description": obj.description, "tags": dict(sorted(obj.tags.items())), "owner": obj.owner}


def common_args(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The metadata of a spec as constructor arguments (the inverse of :func:`common_spec`)."""
    return {"description": spec.get("description", ""), "tags": spec.get("tags"), "owner": spec.get("owner", "")}
