"""Data sources: ``FileSource`` (Parquet, batch) and ``PushSource`` (fresh rows pushed in).

Sources are serialized as specs with a ``type`` key; :func:`source_from_spec` dispatches on it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ladle.definitions._common import check_name, check_str, check_tags, common_args, common_spec
from ladle.errors import DefinitionError


class DataSource:
    """Base of all sources: a name, metadata and timestamp columns."""

    kind = "data source"
    type_name = ""

    def __init__(
        self,
        name: str,
        timestamp_field: str = "",
        created_timestamp_column: str = "",
        field_mapping: Mapping[str, str] | None = None,
        description: str = "",
        tags: Mapping[str, str] | None = None,
        owner: str = "",
    ) -> None:
        self.name = check_name(self.kind, name) if name else ""
        label = name or self.kind
        self.timestamp_field = check_str(self.kind, label, "timestamp_field", timestamp_field)
        self.created_timestamp_column = check_str(
            self.kind, label, "created_timestamp_column", created_timestamp_column
        )
        mapping = dict(field_mapping or {})
        for src, dst in mapping.items():
            if not isinstance(src, str) or not isinstance(dst, str):
                raise DefinitionError(f"{self.kind} '{label}': field_mapping must map str to str")
        if self.timestamp_field and self.timestamp_field == self.created_timestamp_column:
            raise DefinitionError(
                f"{self.kind} '{label}': timestamp_field and created_timestamp_column "
                f"are both '{self.timestamp_field}'; they must be different columns"
            )
        self.field_mapping = mapping
        self.description = check_str(self.kind, label, "description", description)
        self.tags = check_tags(self.kind, label, tags)
        self.owner = check_str(self.kind, label, "owner", owner)

    def to_spec(self) -> dict[str, Any]:
        """JSON-ready spec as stored in the registry."""
        return {
            "type": self.type_name,
            "name": self.name,
            "timestamp_field": self.timestamp_field,
            "created_timestamp_column": self.created_timestamp_column,
            "field_mapping": dict(sorted(self.field_mapping.items())),
            **common_spec(self),
        }

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DataSource) and self.to_spec() == other.to_spec()

    def __hash__(self) -> int:
        return hash((self.type_name, self.name))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


class FileSource(DataSource):
    """Parquet file(s) as a batch source: a file, a directory or a glob.

    >>> FileSource(name="ticks", path="data/ticks.parquet", timestamp_field="event_timestamp",
    ...            created_timestamp_column="created")
    FileSource(name='ticks')

    A relative ``path`` is resolved against the feature repo directory.
    """

    kind = "file source"
    type_name = "file"

    def __init__(
        self,
        path: str,
        timestamp_field: str = "",
        created_timestamp_column: str = "",
        field_mapping: Mapping[str, str] | None = None,
        name: str = "",
        description: str = "",
        tags: Mapping[str, str] | None = None,
        owner: str = "",
        file_format: str = "parquet",
    ) -> None:
        if not isinstance(path, str) or not path:
            raise DefinitionError(f"file source '{name}': path must be a non-empty string")
        if file_format != "parquet":
            raise DefinitionError(f"file source '{name}': file_format {file_format!r} is not supported; use 'parquet'")
        super().__init__(name or "", timestamp_field, created_timestamp_column, field_mapping, description, tags, owner)
        if not self.timestamp_field:
            raise DefinitionError(f"file source '{name or path}': timestamp_field is required")
        self.path = path
        self.file_format = file_format

    def to_spec(self) -> dict[str, Any]:
        """JSON-ready spec as stored in the registry."""
        return {**super().to_spec(), "path": self.path, "file_format": self.file_format}

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> FileSource:
        """Rebuild from :meth:`to_spec` output."""
        return cls(
            path=spec["path"],
            timestamp_field=spec.get("timestamp_field", ""),
            created_timestamp_column=spec.get("created_timestamp_column", ""),
            field_mapping=spec.get("field_mapping"),
            name=spec.get("name", ""),
            **common_args(spec),
            file_format=spec.get("file_format", "parquet"),
        )


class PushSource(DataSource):
    """Rows pushed by clients (``store.push`` or ``POST /push``), backed by a batch source.

    The batch source is where ``to="offline"`` pushes are appended and where history is read.
    """

    kind = "push source"
    type_name = "push"

    def __init__(
        self,
        name: str,
        batch_source: DataSource,
        description: str = "",
        tags: Mapping[str, str] | None = None,
        owner: str = "",
    ) -> None:
        if not name:
            raise DefinitionError("push source: a name is required")
        if not isinstance(batch_source, DataSource) or isinstance(batch_source, PushSource):
            raise DefinitionError(f"push source '{name}': batch_source must be a batch source such as FileSource")
        super().__init__(
            name,
            batch_source.timestamp_field,
            batch_source.created_timestamp_column,
            batch_source.field_mapping,
            description,
            tags,
            owner,
        )
        self.batch_source = batch_source

    def to_spec(self) -> dict[str, Any]:
        """JSON-ready spec as stored in the registry."""
        return {**super().to_spec(), "batch_source": self.batch_source.to_spec()}

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> PushSource:
        """Rebuild from :meth:`to_spec` output."""
        return cls(
            name=spec["name"],
            batch_source=source_from_spec(spec["batch_source"]),
            **common_args(spec),
        )


_FROM_SPEC: dict[str, Callable[[Mapping[str, Any]], DataSource]] = {
    FileSource.type_name: FileSource.from_spec,
    PushSource.type_name: PushSource.from_spec,
}


def source_from_spec(spec: Mapping[str, Any]) -> DataSource:
    """Rebuild any source from its spec."""
    try:
        factory = _FROM_SPEC[spec["type"]]
    except KeyError:
        raise DefinitionError(f"unknown data source type {spec.get('type')!r}") from None
    return factory(spec)
