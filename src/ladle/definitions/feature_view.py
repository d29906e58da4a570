"""``FeatureView``: a group of features about the same entities, from one source, with a ttl."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pyarrow as pa

from ladle.definitions._common import check_name, check_str, check_tags, common_args, common_spec
from ladle.definitions.entity import Entity
from ladle.definitions.field import Field
from ladle.definitions.sources import DataSource, KafkaSource, PushSource, source_from_spec
from ladle.errors import DataSourceError, DefinitionError
from ladle.types import compatible, dtype_from_arrow, dtype_from_value_type


@dataclass(frozen=True)
class FeatureViewProjection:
    """A selection of a view's features, optionally renamed: ``fv[["a", "b"]]``.

    ``alias`` replaces the view name in ``full_feature_names`` output; ``join_key_map`` maps the
    view's join keys to the names the caller uses in its entity rows.
    """

    view_name: str
    features: tuple[str, ...]
    alias: str | None = None
    join_key_map: Mapping[str, str] = field(default_factory=dict)

    @property
    def name_to_use(self) -> str:
        """The prefix used for ``full_feature_names``."""
        return self.alias or self.view_name

    def with_name(self, alias: str) -> FeatureViewProjection:
        """The same projection under another name."""
        return FeatureViewProjection(self.view_name, self.features, check_name("alias", alias), self.join_key_map)

    def with_join_key_map(self, join_key_map: Mapping[str, str]) -> FeatureViewProjection:
        """The same projection reading entity rows through renamed join keys."""
        return FeatureViewProjection(self.view_name, self.features, self.alias, dict(join_key_map))

    def to_spec(self) -> dict[str, Any]:
        """JSON-ready spec as stored in a feature service."""
        return {
            "view": self.view_name,
            "features": list(self.features),
            "alias": self.alias,
            "join_key_map": dict(sorted(self.join_key_map.items())),
        }

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> FeatureViewProjection:
        """Rebuild from :meth:`to_spec` output."""
        return cls(spec["view"], tuple(spec["features"]), spec.get("alias"), spec.get("join_key_map", {}))


class FeatureView:
    """Features about one or more entities, read from a source, valid for ``ttl``.

    >>> prices = FeatureView(
    ...     name="commodity_price_features", entities=[commodity], ttl=timedelta(days=30),
    ...     schema=[Field(name="current_price", dtype=Float64)], source=ticks_source)

    ``ttl`` bounds how old a value may be: for point-in-time joins relative to each entity row, and
    for online reads relative to now (a value older than ttl is returned as ``OUTSIDE_MAX_AGE``).
    ``ttl=timedelta(0)`` means no limit. Entity columns may appear in ``schema``; every other field is
    a feature.
    """

    def __init__(
        self,
        name: str,
        source: DataSource,
        schema: Sequence[Field] | None = None,
        entities: Sequence[Entity] | None = None,
        ttl: timedelta | None = timedelta(0),
        online: bool = True,
        offline: bool = False,
        description: str = "",
        tags: Mapping[str, str] | None = None,
        owner: str = "",
    ) -> None:
        self.name = check_name("feature view", name)
        if not isinstance(source, DataSource):
            raise DefinitionError(f"feature view '{name}': source must be a data source, got {source!r}")
        self.source = source
        self.entities = list(entities or [])
        self._check_entities()
        if ttl is None:
            ttl = timedelta(0)
        if not isinstance(ttl, timedelta):
            raise DefinitionError(f"feature view '{name}': ttl must be a datetime.timedelta, got {ttl!r}")
        if ttl < timedelta(0):
            raise DefinitionError(f"feature view '{name}': ttl {ttl} is negative; use timedelta(0) for no limit")
        self.ttl = ttl
        self.online = bool(online)
        self.offline = bool(offline)
        self.description = check_str("feature view", name, "description", description)
        self.tags = check_tags("feature view", name, tags)
        self.owner = check_str("feature view", name, "owner", owner)
        self.entity_columns, self.features = self._split_schema(list(schema or []))

    def _check_entities(self) -> None:
        seen: set[str] = set()
        for entity in self.entities:
            if not isinstance(entity, Entity):
                raise DefinitionError(f"feature view '{self.name}': entities must be Entity objects, got {entity!r}")
            if entity.join_key in seen:
                raise DefinitionError(f"feature view '{self.name}': join key '{entity.join_key}' appears twice")
            seen.add(entity.join_key)

    def _split_schema(self, schema: list[Field]) -> tuple[list[Field], list[Field]]:
        names = [f.name for f in schema]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise DefinitionError(f"feature view '{self.name}': duplicate field names {dupes}")
        reserved = {self.source.timestamp_field, self.source.created_timestamp_column} - {""}
        clash = sorted(reserved & set(names))
        if clash:
            raise DefinitionError(
                f"feature view '{self.name}': {clash} are timestamp columns of the source, not features"
            )
        by_name = {f.name: f for f in schema}
        entity_columns: list[Field] = []
        for entity in self.entities:
            declared = by_name.get(entity.join_key)
            if declared is not None:
                if entity.value_type is not None and declared.dtype.value_type != entity.value_type:
                    raise DefinitionError(
                        f"feature view '{self.name}': field '{declared.name}' is {declared.dtype} "
                        f"but entity '{entity.name}' says {entity.value_type.name}"
                    )
                entity_columns.append(declared)
            elif entity.value_type is not None:
                entity_columns.append(Field(name=entity.join_key, dtype=dtype_from_value_type(entity.value_type)))
        keys = set(self.join_keys)
        return entity_columns, [f for f in schema if f.name not in keys]

    @property
    def join_keys(self) -> list[str]:
        """The join keys, in entity order."""
        return [e.join_key for e in self.entities]

    @property
    def batch_source(self) -> DataSource:
        """Where history is read from: the source, or a push or Kafka source's batch source."""
        if isinstance(self.source, (PushSource, KafkaSource)):
            return self.source.batch_source
        return self.source

    @property
    def stream_source(self) -> PushSource | None:
        """The push source feeding this view, if any."""
        return self.source if isinstance(self.source, PushSource) else None

    @property
    def feature_names(self) -> list[str]:
        """Feature names in schema order."""
        return [f.name for f in self.features]

    @property
    def is_resolved(self) -> bool:
        """True when every join key's dtype is known (declared or inferred from the source)."""
        return len(self.entity_columns) == len(self.entities)

    def feature(self, name: str) -> Field:
        """The feature field called ``name``."""
        for f in self.features:
            if f.name == name:
                return f
        from ladle.errors import FeatureNotFoundError

        raise FeatureNotFoundError(f"{self.name}:{name}", detail=f"'{self.name}' has features {self.feature_names}")

    def __getitem__(self, features: Sequence[str]) -> FeatureViewProjection:
        if isinstance(features, str):
            raise DefinitionError(f"use fv[[{features!r}]] (a list) to select features of '{self.name}'")
        for name in features:
            self.feature(name)
        return FeatureViewProjection(self.name, tuple(features))

    def projection(self) -> FeatureViewProjection:
        """A projection of every feature."""
        return FeatureViewProjection(self.name, tuple(self.feature_names))

    def with_name(self, alias: str) -> FeatureViewProjection:
        """All features under another name (for ``full_feature_names``)."""
        return self.projection().with_name(alias)

    def with_join_key_map(self, join_key_map: Mapping[str, str]) -> FeatureViewProjection:
        """All features, read through renamed join keys."""
        return self.projection().with_join_key_map(join_key_map)

    def resolve(self, source_schema: pa.Schema) -> FeatureView:
        """Check this view against its source's Arrow schema and infer what was left out.

        Infers join-key dtypes that were not declared and, when the schema lists no features,
        every non-key, non-timestamp column as a feature (as Feast does). Raises
        :class:`DataSourceError` when a column is missing or has an incompatible type.
        """
        src = self.batch_source
        columns = {src.field_mapping.get(n, n): source_schema.field(n).type for n in source_schema.names}
        where = f"feature view '{self.name}': source {src.name or getattr(src, 'path', '')!r}"
        for required in (src.timestamp_field, src.created_timestamp_column):
            if required and required not in columns:
                raise DataSourceError(f"{where} has no timestamp column '{required}'; columns: {sorted(columns)}")
        schema = list(self.entity_columns)
        for entity in self.entities:
            if entity.join_key not in columns:
                raise DataSourceError(f"{where} has no join key column '{entity.join_key}'")
            if not any(f.name == entity.join_key for f in schema):
                schema.append(Field(name=entity.join_key, dtype=dtype_from_arrow(columns[entity.join_key])))
        features = list(self.features)
        if not features:
            skip = set(self.join_keys) | {src.timestamp_field, src.created_timestamp_column}
            features = [Field(name=n, dtype=dtype_from_arrow(t)) for n, t in columns.items() if n not in skip]
        for f in features:
            if f.name not in columns:
                raise DataSourceError(f"{where} has no column for feature '{f.name}'")
            actual = dtype_from_arrow(columns[f.name])
            if not compatible(f.dtype, actual):
                raise DataSourceError(f"{where}: column '{f.name}' is {actual} but the view declares {f.dtype}")
        out = self._copy(schema + features)
        return out

    def _copy(self, schema: list[Field]) -> FeatureView:
        return FeatureView(
            name=self.name,
            source=self.source,
            schema=schema,
            entities=self.entities,
            ttl=self.ttl,
            online=self.online,
            offline=self.offline,
            description=self.description,
            tags=self.tags,
            owner=self.owner,
        )

    def to_spec(self) -> dict[str, Any]:
        """JSON-ready spec as stored in the registry (entities by name, source embedded)."""
        return {
            "name": self.name,
            "entities": [e.name for e in self.entities],
            "entity_columns": [f.to_spec() for f in self.entity_columns],
            "features": [f.to_spec() for f in self.features],
            "ttl_seconds": self.ttl.total_seconds(),
            "online": self.online,
            "offline": self.offline,
            "source": self.source.to_spec(),
            **common_spec(self),
        }

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any], entities: Mapping[str, Entity]) -> FeatureView:
        """Rebuild from :meth:`to_spec` output, looking entities up by name."""
        return cls(**cls._spec_args(spec, entities, "feature view"))

    @staticmethod
    def _spec_args(spec: Mapping[str, Any], entities: Mapping[str, Entity], kind: str) -> dict[str, Any]:
        """The constructor arguments every feature view kind rebuilds from its spec."""
        missing = [n for n in spec["entities"] if n not in entities]
        if missing:
            raise DefinitionError(f"{kind} '{spec['name']}' refers to unknown entities {missing}")
        schema = [Field.from_spec(f) for f in spec.get("entity_columns", [])]
        schema += [Field.from_spec(f) for f in spec["features"]]
        return {
            "name": spec["name"],
            "source": source_from_spec(spec["source"]),
            "schema": schema,
            "entities": [entities[n] for n in spec["entities"]],
            "ttl": timedelta(seconds=spec.get("ttl_seconds", 0)),
            "online": spec.get("online", True),
            "offline": spec.get("offline", False),
            **common_args(spec),
        }

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FeatureView) and self.to_spec() == other.to_spec()

    def __hash__(self) -> int:
        return hash(("feature_view", self.name))

    def __repr__(self) -> str:
        return f"FeatureView(name={self.name!r}, features={self.feature_names!r})"
