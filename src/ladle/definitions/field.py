"""``Field``: a named, typed column of a feature view."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ladle.definitions._common import check_name, check_str, check_tags
from ladle.errors import DefinitionError
from ladle.types import DType, dtype_from_name


@dataclass(frozen=True)
class Field:
    """A feature or entity column: ``Field(name="current_price", dtype=Float64)``."""

    name: str
    dtype: DType
    description: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_name("field", self.name)
        if not isinstance(self.dtype, DType):
            raise DefinitionError(
                f"field '{self.name}': dtype must be a Ladle dtype such as Float64 or Array(String), got {self.dtype!r}"
            )
        object.__setattr__(self, "description", check_str("field", self.name, "description", self.description))
        object.__setattr__(self, "tags", check_tags("field", self.name, self.tags))

    def to_spec(self) -> dict[str, Any]:
        """JSON-ready spec as stored in the registry."""
        spec: dict[str, Any] = {"name": self.name, "dtype": self.dtype.name}
        if self.description:
            spec["description"] = self.description
        if self.tags:
            spec["tags"] = dict(sorted(self.tags.items()))
        return spec

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> Field:
        """Rebuild a field from :meth:`to_spec` output."""
        return cls(
            name=spec["name"],
            dtype=dtype_from_name(spec["dtype"]),
            description=spec.get("description", ""),
            tags=spec.get("tags", {}),
        )
