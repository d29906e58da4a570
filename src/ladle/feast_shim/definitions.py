"""Feast's definition classes, with Feast's signatures, building Ladle's own definitions.

Each class here is a thin subclass of the Ladle class of the same name: it accepts the keyword
arguments Feast 0.67 documents, translates the ones whose spelling differs (``file_format=ParquetFormat()``,
``value_type=ValueType.UNKNOWN``, ``mode="spark"`` without a transformation) and refuses, with one
line naming the argument, what Ladle cannot honour (a Delta file format, an S3 endpoint override, a
Spark transformation, vector indexes). The objects are plain Ladle definitions afterwards:
``isinstance(obj, ladle.FeatureView)`` holds and they are stored exactly as Ladle's own.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from typing import Any

from ladle import definitions as lad
from ladle.definitions.feature_logging import LoggingConfig
from ladle.errors import DefinitionError
from ladle.types import DType, ValueType

log = logging.getLogger(__name__)


def unsupported(what: str, why: str) -> DefinitionError:
    """The one-line error for a Feast feature Ladle does not provide."""
    return DefinitionError(f"Ladle does not support {what}: {why}")


class ParquetFormat:
    """``feast.data_format.ParquetFormat``: Parquet files (the only file format Ladle reads)."""

    name = "parquet"


class DeltaFormat:
    """``feast.data_format.DeltaFormat``: refused when used in a ``FileSource``."""

    name = "delta"

    def __init__(self, *_args: Any, **_kwargs: Any) -> None:
        pass


class ProtoFormat:
    """``feast.data_format.ProtoFormat``: refused (Ladle decodes JSON and Avro messages)."""

    def __init__(self, class_path: str = "") -> None:
        raise unsupported("ProtoFormat", "stream messages must be JsonFormat or AvroFormat")


def _file_format(name: str, file_format: object) -> str:
    if file_format is None or isinstance(file_format, ParquetFormat) or file_format == "parquet":
        return "parquet"
    label = type(file_format).__name__ if not isinstance(file_format, str) else repr(file_format)
    raise unsupported(f"file_format {label} (file source '{name}')", "Ladle reads Parquet files only")


class FileSource(lad.FileSource):
    """``feast.FileSource`` (also ``feast.infra.offline_stores.file_source.FileSource``)."""

    def __init__(
        self,
        *,
        path: str,
        name: str = "",
        event_timestamp_column: str = "",
        file_format: object = None,
        created_timestamp_column: str = "",
        field_mapping: Mapping[str, str] | None = None,
        s3_endpoint_override: str | None = None,
        description: str = "",
        tags: Mapping[str, str] | None = None,
        owner: str = "",
        timestamp_field: str = "",
    ) -> None:
        if s3_endpoint_override:
            raise unsupported(f"s3_endpoint_override (file source '{name or path}')", "give a local path or glob")
        super().__init__(
            path=path,
            timestamp_field=timestamp_field or event_timestamp_column,
            created_timestamp_column=created_timestamp_column,
            field_mapping=field_mapping,
            name=name,
            description=description,
            tags=tags,
            owner=owner,
            file_format=_file_format(name or path, file_format),
        )


class PushSource(lad.PushSource):
    """``feast.PushSource``."""

    def __init__(
        self,
        *,
        name: str,
        batch_source: lad.DataSource,
        description: str = "",
        tags: Mapping[str, str] | None = None,
        owner: str = "",
    ) -> None:
        super().__init__(name=name, batch_source=batch_source, description=description, tags=tags, owner=owner)


class KafkaSource(lad.KafkaSource):
    """``feast.KafkaSource``; ``kafka_settings`` go in ``feature_store.yaml`` in Ladle."""

    def __init__(self, *, kafka_settings: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        if kafka_settings:
            raise unsupported(
                f"kafka_settings on KafkaSource '{kwargs.get('name', '')}'",
                "connection settings belong in feature_store.yaml",
            )
        super().__init__(**kwargs)


class Entity(lad.Entity):
    """``feast.Entity``; ``value_type=ValueType.UNKNOWN`` means "infer it from the source"."""

    def __init__(
        self,
        *,
        name: str,
        join_keys: Sequence[str] | None = None,
        value_type: ValueType | DType | None = None,
        description: str = "",
        tags: Mapping[str, str] | None = None,
        owner: str = "",
    ) -> None:
        if value_type is not None and not isinstance(value_type, DType) and int(value_type) in (-1, 0):
            value_type = None
        super().__init__(
            name=name, join_keys=join_keys, value_type=value_type, description=description, tags=tags, owner=owner
        )


class _FieldMeta(type):
    # ``isinstance(f, feast.Field)`` holds for the Ladle fields ``feast.Field(...)`` returns.
    def __instancecheck__(cls, instance: object) -> bool:
        return isinstance(instance, lad.Field)


class Field(metaclass=_FieldMeta):
    """``feast.Field``: builds a Ladle :class:`~ladle.definitions.Field`; vector-index options are refused."""

    def __new__(  # type: ignore[misc]  # returns Ladle's Field, on purpose
        cls,
        *,
        name: str,
        dtype: DType,
        description: str = "",
        tags: Mapping[str, str] | None = None,
        vector_index: bool = False,
        vector_length: int = 0,
        vector_search_metric: str | None = None,
    ) -> lad.Field:
        if vector_index or vector_length or vector_search_metric:
            raise unsupported(f"vector_index on field '{name}'", "Ladle has no vector search")
        return lad.Field(name=name, dtype=dtype, description=description, tags=dict(tags or {}))


def _no_transformation(kind: str, name: str, mode: object, udf: object, feature_transformation: object) -> None:
    if udf is not None or feature_transformation is not None:
        raise unsupported(
            f"a {kind} with a transformation ('{name}', mode={mode!r})",
            "compute the columns into the source, or use a StreamFeatureView with mode='pandas'",
        )


class FeatureView(lad.FeatureView):
    """``feast.FeatureView``; ``sink_source`` and a transformation are refused."""

    def __init__(
        self,
        *,
        name: str,
        source: lad.DataSource,
        schema: Sequence[lad.Field] | None = None,
        entities: Sequence[lad.Entity] | None = None,
        ttl: timedelta | None = timedelta(0),
        online: bool = True,
        offline: bool = False,
        description: str = "",
        tags: Mapping[str, str] | None = None,
        owner: str = "",
        sink_source: lad.DataSource | None = None,
        mode: object = None,
        udf: object = None,
        feature_transformation: object = None,
        enable_validation: bool = False,
        version: str = "latest",
    ) -> None:
        if version != "latest":
            raise unsupported(f"version={version!r} on feature view '{name}'", "Ladle keeps one live version per view")
        if sink_source is not None:
            raise unsupported(f"sink_source on feature view '{name}'", "a view reads one source")
        _no_transformation("FeatureView", name, mode, udf, feature_transformation)
        super().__init__(
            name=name,
            source=source,
            schema=schema,
            entities=entities,
            ttl=ttl,
            online=online,
            offline=offline,
            description=description,
            tags=tags,
            owner=owner,
        )


class BatchFeatureView(FeatureView):
    """``feast.BatchFeatureView``: works without a transformation (then it is a feature view)."""

    def __init__(self, *, name: str, udf: object = None, mode: object = None, **kwargs: Any) -> None:
        kwargs.pop("udf_string", None)
        if kwargs.pop("aggregations", None):
            raise unsupported(f"aggregations on BatchFeatureView '{name}'", "use a StreamFeatureView with aggregations")
        _no_transformation("BatchFeatureView", name, mode, udf, kwargs.pop("feature_transformation", None))
        super().__init__(name=name, **kwargs)


class StreamFeatureView(lad.StreamFeatureView):
    """``feast.StreamFeatureView``; Feast's default ``mode="spark"`` is read as ``"pandas"`` when no
    transformation runs, and refused when one does."""

    def __init__(
        self, *, name: str, mode: str | None = None, udf: Callable[..., Any] | None = None, **kwargs: Any
    ) -> None:
        for key in ("feature_transformation", "enable_tiling", "tiling_hop_size"):
            if kwargs.pop(key, None):
                raise unsupported(f"{key} on stream feature view '{name}'", "not available in Ladle")
        if mode == "spark" and udf is not None:
            raise unsupported(
                f"mode='spark' on stream feature view '{name}'", "Ladle runs transforms with mode='pandas'"
            )
        if mode is None or mode == "spark":
            mode = "pandas"
        super().__init__(name=name, mode=mode, udf=udf, **kwargs)


def stream_feature_view(**kwargs: Any) -> Callable[[Callable[..., Any]], StreamFeatureView]:
    """``@feast.stream_feature_view(...)``: the decorated function is the view's ``udf``."""

    def wrap(fn: Callable[..., Any]) -> StreamFeatureView:
        name = kwargs.pop("name", None) or fn.__name__
        return StreamFeatureView(name=name, udf=fn, **kwargs)

    return wrap


class FeatureService(lad.FeatureService):
    """``feast.FeatureService``; ``logging_config`` logs served features (docs/feature-logging.md)."""

    def __init__(
        self,
        *,
        name: str,
        features: Sequence[Any],
        tags: Mapping[str, str] | None = None,
        description: str = "",
        owner: str = "",
        logging_config: LoggingConfig | None = None,
    ) -> None:
        super().__init__(
            name=name, features=features, description=description, tags=tags, owner=owner, logging_config=logging_config
        )


class PushMode(enum.StrEnum):
    """``feast.data_source.PushMode``: where ``store.push(..., to=...)`` writes; equal to Ladle's strings."""

    ONLINE = "online"
    OFFLINE = "offline"
    ONLINE_AND_OFFLINE = "online_and_offline"


class ConflictPolicy(enum.Enum):
    """``feast.ConflictPolicy``: a :class:`LabelView` takes ``LAST_WRITE_WINS`` (Ladle's rule everywhere)."""

    LAST_WRITE_WINS = "last_write_wins"
    LABELER_PRIORITY = "labeler_priority"
    MAJORITY_VOTE = "majority_vote"


#: Tags a LabelView leaves on the feature view it becomes (what Ladle keeps of its label settings).
LABEL_VIEW_TAG = "ladle.io/feast-label-view"


class LabelView(FeatureView):
    """``feast.LabelView`` (mutable human labels) as a feature view over its (push) source.

    With ``ConflictPolicy.LAST_WRITE_WINS`` (Feast's default) a label view reads like any Ladle
    view: the newest label per entity wins, online and point-in-time offline. Other policies
    resolve labels by labeler in offline reads, which Ladle does not do: they are refused. The
    labeler field stays an ordinary feature; the label settings are kept as tags.
    """

    def __init__(
        self,
        *,
        name: str,
        source: lad.DataSource | None = None,
        schema: Sequence[lad.Field] | None = None,
        entities: Sequence[lad.Entity] | None = None,
        ttl: timedelta | None = timedelta(0),
        online: bool = True,
        description: str = "",
        tags: Mapping[str, str] | None = None,
        owner: str = "",
        labeler_field: str = "labeler",
        conflict_policy: ConflictPolicy = ConflictPolicy.LAST_WRITE_WINS,
        reference_feature_view: str | None = None,
    ) -> None:
        if source is None:
            raise unsupported(f"LabelView '{name}' without a source", "give it a PushSource")
        if conflict_policy != ConflictPolicy.LAST_WRITE_WINS:
            raise unsupported(
                f"conflict_policy={conflict_policy.name} on LabelView '{name}'", "Ladle serves the newest label"
            )
        kept = dict(tags or {})
        kept[LABEL_VIEW_TAG] = f"labeler_field={labeler_field}"
        if reference_feature_view:
            kept[LABEL_VIEW_TAG] += f";reference_feature_view={reference_feature_view}"
        super().__init__(
            name=name,
            source=source,
            schema=schema,
            entities=entities,
            ttl=ttl,
            online=online,
            description=description,
            tags=kept,
            owner=owner,
        )


class Project:
    """``feast.Project``: accepted; the project name comes from ``feature_store.yaml`` in Ladle."""

    def __init__(
        self, *, name: str, description: str = "", tags: Mapping[str, str] | None = None, owner: str = ""
    ) -> None:
        self.name = name
        self.description = description
        self.tags = dict(tags or {})
        self.owner = owner


def refused_class(name: str, why: str) -> type:
    """A stand-in for a Feast class Ladle refuses: importing it works, constructing it fails."""

    def __init__(self: object, *_args: Any, **_kwargs: Any) -> None:
        raise unsupported(name, why)

    return type(name, (), {"__init__": __init__, "__doc__": f"Refused by Ladle: {why}."})
