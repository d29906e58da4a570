"""``Entity``: what features are about (a commodity, a country, a weather station)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ladle.definitions._common import check_name, check_str, check_tags, common_args, common_spec
from ladle.errors import DefinitionError
from ladle.types import JOIN_KEY_TYPES, DType, ValueType


class Entity:
    """An entity with exactly one join key (Feast's rule; composite keys = several entities).

    >>> commodity = Entity(name="commodity", join_keys=["commodity_code"], value_type=ValueType.STRING)
    """

    def __init__(
        self,
        name: str,
        join_keys: Sequence[str] | None = None,
        value_type: ValueType | DType | None = None,
        description: str = "",
        tags: Mapping[str, str] | None = None,
        owner: str = "",
    ) -> None:
        self.name = check_name("entity", name)
        keys = list(join_keys) if join_keys is not None else [name]
        if isinstance(join_keys, str):
            raise DefinitionError(f"entity '{name}': join_keys must be a list, e.g. [{join_keys!r}]")
        if len(keys) != 1:
            raise DefinitionError(
                f"entity '{name}' has {len(keys)} join keys; an entity has exactly one "
                "(use several entities in a feature view for a composite key)"
            )
        self.join_key = check_name("join key", keys[0])
        if isinstance(value_type, DType):
            value_type = value_type.value_type
        if value_type is not None:
            value_type = ValueType(value_type)
            if value_type not in JOIN_KEY_TYPES:
                allowed = ", ".join(sorted(v.name for v in JOIN_KEY_TYPES))
                raise DefinitionError(
                    f"entity '{name}': value_type {value_type.name} cannot be a join key; use one of {allowed}"
                )
        self.value_type: ValueType | None = value_type
        self.description = check_str("entity", name, "description", description)
        self.tags = check_tags("entity", name, tags)
        self.owner = check_str("entity", name, "owner", owner)

    @property
    def join_keys(self) -> list[str]:
        """The join keys, as a one-element list (Feast's attribute)."""
        return [self.join_key]

    def to_spec(self) -> dict[str, Any]:
        """JSON-ready spec as stored in the registry."""
        return {
            "name": self.name,
            "join_key": self.join_key,
            "value_type": self.value_type.name if self.value_type is not None else None,
            **common_spec(self),
        }

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> Entity:
        """Rebuild an entity from :meth:`to_spec` output."""
        vt = spec.get("value_type")
        return cls(
            name=spec["name"],
            join_keys=[spec["join_key"]],
            value_type=ValueType[vt] if vt else None,
            **common_args(spec),
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Entity) and self.to_spec() == other.to_spec()

    def __hash__(self) -> int:
        return hash(("entity", self.name))

    def __repr__(self) -> str:
        return f"Entity(name={self.name!r}, join_keys={self.join_keys!r})"
