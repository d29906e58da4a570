"""``StreamFeatureView`` and ``Aggregation``: features computed from a stream, defined once.

The same definition runs in two places with the same result (the semantics are in
``docs/streaming.md``, "Semantics"): in batch, by DuckDB over the source's batch source (backfills,
training sets, materialization), and incrementally by ``ladle stream`` over the Kafka topic.

Transforms are Python functions over pandas DataFrames, as in Feast's ``mode="pandas"``:

* ``udf`` runs on the events before aggregation (row-level: it may add, change or drop columns and
  filter rows, but not change the join keys or the event time);
* ``derive`` runs on the aggregated rows (row-level) and adds features computed from the
  aggregates, e.g. a percent change from a ``first`` and a ``last``.

The registry keeps each function's module, name, source text and a hash of it. The process
that runs a view (``ladle stream``, materialization, historical retrieval) takes the function from
the feature repo's Python files and refuses to run when its source no longer matches the registry.
"""

from __future__ import annotations

import hashlib
import inspect
import textwrap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from ladle.definitions._common import check_name
from ladle.definitions.entity import Entity
from ladle.definitions.feature_view import FeatureView
from ladle.definitions.field import Field
from ladle.definitions.sources import DataSource, KafkaSource, PushSource
from ladle.errors import DataSourceError, DefinitionError
from ladle.types import DType, Float64, Int64, dtype_from_arrow

if TYPE_CHECKING:
    import pandas as pd

#: Aggregation functions, with Feast's names.
AGGREGATION_FUNCTIONS: tuple[str, ...] = ("count", "sum", "mean", "min", "max", "stddev", "first", "last")
#: Transform modes; Feast's ``spark`` mode needs a Spark cluster and is refused with a message.
MODES: tuple[str, ...] = ("pandas", "python")

_MICRO = timedelta(microseconds=1)
#: Columns the stream process adds to each event it appends to the batch source (rule 9).
KAFKA_COLUMNS: tuple[str, ...] = ("_kafka_partition", "_kafka_offset")


def window_label(span: timedelta) -> str:
    """A short label for a window: ``7d``, ``1h``, ``90s``, ``1500ms``."""
    micros = span // _MICRO
    for unit, size in (("d", 86_400_000_000), ("h", 3_600_000_000), ("m", 60_000_000), ("s", 1_000_000)):
        if micros % size == 0:
            return f"{micros // size}{unit}"
    return f"{micros}us" if micros % 1000 else f"{micros // 1000}ms"


def _check_span(what: str, span: object, allow_none: bool) -> timedelta | None:
    if span is None and allow_none:
        return None
    if not isinstance(span, timedelta):
        raise DefinitionError(f"{what} must be a datetime.timedelta, got {span!r}")
    if span <= timedelta(0):
        raise DefinitionError(f"{what} must be positive, got {span}")
    if span % _MICRO:
        raise DefinitionError(f"{what} {span} is finer than a microsecond")
    return span


@dataclass(frozen=True)
class Aggregation:
    """One windowed aggregate of one column, with Feast's arguments.

    >>> Aggregation(column="price", function="mean", time_window=timedelta(days=7))

    ``function`` is one of :data:`AGGREGATION_FUNCTIONS`. Without ``slide_interval`` the window
    slides continuously: the value at an event at time ``t`` covers the events in ``(t - window, t]``.
    With one, windows hop: a row at each multiple ``e`` of the interval (since the Unix epoch)
    covers ``(e - window, e]``. ``name`` is the output feature's name; by default
    ``{column}_{function}_{window}``, e.g. ``price_mean_7d``.
    """

    column: str = ""
    function: str = ""
    time_window: timedelta | None = None
    slide_interval: timedelta | None = None
    name: str = ""

    def __post_init__(self) -> None:
        check_name("aggregation column", self.column)
        if self.function not in AGGREGATION_FUNCTIONS:
            raise DefinitionError(
                f"aggregation of '{self.column}': function {self.function!r} is not one of "
                f"{', '.join(AGGREGATION_FUNCTIONS)}"
            )
        window = _check_span(f"aggregation of '{self.column}': time_window", self.time_window, allow_none=False)
        slide = _check_span(f"aggregation of '{self.column}': slide_interval", self.slide_interval, allow_none=True)
        assert window is not None
        if slide is not None and window % slide:
            raise DefinitionError(
                f"aggregation of '{self.column}': time_window {window} is not a whole number of slide_interval {slide}"
            )
        if not self.name:
            object.__setattr__(self, "name", f"{self.column}_{self.function}_{window_label(window)}")
        check_name("aggregation name", self.name)

    @property
    def window(self) -> timedelta:
        """The time window (never None after construction)."""
        assert self.time_window is not None
        return self.time_window

    @property
    def output_dtype(self) -> DType:
        """``Int64`` for count, ``Float64`` for every other function."""
        return Int64 if self.function == "count" else Float64

    def to_spec(self) -> dict[str, Any]:
        """JSON-ready spec (windows in microseconds)."""
        return {
            "column": self.column,
            "function": self.function,
            "time_window_us": self.window // _MICRO,
            "slide_interval_us": None if self.slide_interval is None else self.slide_interval // _MICRO,
            "name": self.name,
        }

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> Aggregation:
        """Rebuild from :meth:`to_spec` output."""
        slide = spec.get("slide_interval_us")
        return cls(
            column=spec["column"],
            function=spec["function"],
            time_window=timedelta(microseconds=spec["time_window_us"]),
            slide_interval=None if slide is None else timedelta(microseconds=slide),
            name=spec.get("name", ""),
        )


TableFn = Callable[["pd.DataFrame"], "pd.DataFrame"]


@dataclass(frozen=True)
class Udf:
    """A transform function as the registry keeps it: where it lives, its source and a hash.

    ``fn`` is the live function when the definition came from the feature repo; a view read
    back from the registry has none until :meth:`bind` gives it one (``ladle stream`` and the
    batch engine bind from the repo's files).
    """

    module: str
    qualname: str
    source: str
    sha256: str
    fn: TableFn | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_function(cls, what: str, fn: object) -> Udf:
        """Capture a function defined in a feature repo file."""
        if not callable(fn) or not inspect.isfunction(fn):
            raise DefinitionError(f"{what} must be a Python function, got {fn!r}")
        if fn.__name__ == "<lambda>":
            raise DefinitionError(f"{what} must be a named function (def), not a lambda: its source is versioned")
        try:
            source = textwrap.dedent(inspect.getsource(fn))
        except (OSError, TypeError):
            raise DefinitionError(f"{what} {fn.__qualname__}: its source cannot be read; define it in a file") from None
        return cls(fn.__module__, fn.__qualname__, source, _sha(source), fn)

    def bind(self, fn: TableFn) -> Udf:
        """The same udf with its live function, after checking the source has not changed."""
        captured = Udf.from_function(self.qualname, fn)
        if captured.sha256 != self.sha256:
            raise DefinitionError(
                f"function {self.qualname} in the feature repo differs from the registry's version; "
                "run 'ladle apply' first"
            )
        return captured

    def __call__(self, frame: pd.DataFrame) -> pd.DataFrame:
        if self.fn is None:
            raise DefinitionError(
                f"function {self.qualname} is not loaded: views read from the registry need the feature repo "
                "to run transforms (run from the repo directory)"
            )
        return self.fn(frame)

    def to_spec(self) -> dict[str, Any]:
        """JSON-ready spec."""
        return {"module": self.module, "qualname": self.qualname, "source": self.source, "sha256": self.sha256}

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> Udf:
        """Rebuild (unbound) from :meth:`to_spec` output."""
        return cls(spec["module"], spec["qualname"], spec["source"], spec["sha256"])


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class StreamFeatureView(FeatureView):
    """Features from a stream (``KafkaSource`` or ``PushSource``), with Feast's arguments.

    >>> price_stream = StreamFeatureView(
    ...     name="commodity_price_stream", source=commodity_ticks, entities=[commodity],
    ...     ttl=timedelta(days=3),
    ...     aggregations=[Aggregation(column="price", function="mean", time_window=timedelta(days=7),
    ...                               name="ma_7d")])

    Without aggregations the view stores and serves the events as they are (after ``udf``): the
    features are the schema's fields, read from each event. With aggregations the features are
    the aggregations' outputs plus the columns ``derive`` adds; a ``schema``, when given, names
    the ones to keep (others are intermediates) and must be given when ``derive`` is.
    All aggregations of one view share one ``slide_interval`` (or none).
    """

    def __init__(
        self,
        *,
        name: str,
        source: DataSource,
        entities: Sequence[Entity] | None = None,
        ttl: timedelta | None = timedelta(0),
        tags: Mapping[str, str] | None = None,
        online: bool = True,
        offline: bool = False,
        description: str = "",
        owner: str = "",
        schema: Sequence[Field] | None = None,
        aggregations: Sequence[Aggregation] | None = None,
        mode: str = "pandas",
        timestamp_field: str = "",
        udf: Callable[..., Any] | Udf | None = None,
        udf_string: str = "",
        derive: Callable[..., Any] | Udf | None = None,
    ) -> None:
        if not isinstance(source, (KafkaSource, PushSource)):
            raise DefinitionError(
                f"stream feature view '{name}': source must be a KafkaSource or PushSource, got {source!r}"
            )
        if mode == "spark":
            raise DefinitionError(
                f"stream feature view '{name}': mode 'spark' needs a Spark cluster; Ladle runs transforms "
                "itself with mode='pandas' (a function over a pandas DataFrame)"
            )
        if mode not in MODES:
            raise DefinitionError(f"stream feature view '{name}': mode {mode!r} is not one of {MODES}")
        if isinstance(source, PushSource) and (aggregations or udf is not None):
            raise DefinitionError(
                f"stream feature view '{name}': aggregations and udf need a KafkaSource (the stream process "
                "computes them); a PushSource view stores the pushed rows as they are"
            )
        if timestamp_field and timestamp_field != source.timestamp_field:
            raise DefinitionError(
                f"stream feature view '{name}': timestamp_field '{timestamp_field}' differs from the source's "
                f"'{source.timestamp_field}'"
            )
        self.mode = mode
        self.aggregations = list(aggregations or [])
        for agg in self.aggregations:
            if not isinstance(agg, Aggregation):
                raise DefinitionError(f"stream feature view '{name}': aggregations must be Aggregation, got {agg!r}")
        self.udf = self._udf(name, "udf", udf)
        self.derive = self._udf(name, "derive", derive)
        if udf_string and self.udf is not None and udf_string.strip() != self.udf.source.strip():
            raise DefinitionError(f"stream feature view '{name}': udf_string does not match the udf's source")
        declared = list(schema or [])
        super().__init__(
            name=name,
            source=source,
            schema=declared,
            entities=entities,
            ttl=ttl,
            online=online,
            offline=offline,
            description=description,
            tags=tags,
            owner=owner,
        )
        self._check_aggregations(declared)
        self._check_declared_keys()

    def _check_declared_keys(self) -> None:
        """With a message schema, each join key must be a declared field (else every message is dead-lettered)."""
        if not isinstance(self.source, KafkaSource):
            return
        mapping = self.source.field_mapping
        declared = {mapping.get(n, n) for n, _ in self.source.message_format.fields()}
        missing = [k for k in self.join_keys if declared and k not in declared]
        if missing:
            raise DefinitionError(
                f"stream feature view '{self.name}': join keys {missing} are not fields of the source's message "
                "format; every message would be dead-lettered"
            )

    @staticmethod
    def _udf(view: str, what: str, fn: object) -> Udf | None:
        if fn is None or isinstance(fn, Udf):
            return fn
        return Udf.from_function(f"stream feature view '{view}': {what}", fn)

    def _check_aggregations(self, declared: list[Field]) -> None:
        if not self.aggregations:
            if self.derive is not None:
                raise DefinitionError(f"stream feature view '{self.name}': derive needs aggregations")
            return
        names = [a.name for a in self.aggregations]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise DefinitionError(f"stream feature view '{self.name}': aggregation names {dupes} appear twice")
        times = {self.source.timestamp_field, self.source.created_timestamp_column} - {""}
        clash = sorted(set(names) & (set(self.join_keys) | times))
        if clash:
            raise DefinitionError(f"stream feature view '{self.name}': aggregation names {clash} are key columns")
        slides = {a.slide_interval for a in self.aggregations}
        if len(slides) > 1:
            raise DefinitionError(
                f"stream feature view '{self.name}': aggregations have different slide_interval values; "
                "one view shares one (or none)"
            )
        if self.derive is not None and not self.features:
            raise DefinitionError(
                f"stream feature view '{self.name}': with derive, list the features to keep in schema"
            )
        if not self.features:
            self.features = [Field(name=a.name, dtype=a.output_dtype) for a in self.aggregations]
            return
        by_name = {a.name: a for a in self.aggregations}
        for f in self.features:
            agg = by_name.get(f.name)
            if agg is None and self.derive is None:
                raise DefinitionError(
                    f"stream feature view '{self.name}': feature '{f.name}' is neither an aggregation output "
                    f"({', '.join(names)}) nor added by derive"
                )
            if agg is not None and f.dtype != agg.output_dtype:
                raise DefinitionError(
                    f"stream feature view '{self.name}': feature '{f.name}' is {f.dtype} but "
                    f"{agg.function} gives {agg.output_dtype}"
                )
        del declared

    @property
    def slide_interval(self) -> timedelta | None:
        """The shared slide interval of the aggregations (None: windows slide with each event)."""
        return self.aggregations[0].slide_interval if self.aggregations else None

    @property
    def max_window(self) -> timedelta:
        """The longest aggregation window (zero without aggregations)."""
        return max((a.window for a in self.aggregations), default=timedelta(0))

    @property
    def udf_string(self) -> str:
        """Feast's name for the udf's source text."""
        return self.udf.source if self.udf is not None else ""

    @property
    def is_computed(self) -> bool:
        """True when batch reads must run the definition (transforms or aggregations), not just read rows."""
        return bool(self.aggregations) or self.udf is not None

    def resolve(self, source_schema: pa.Schema) -> StreamFeatureView:
        """Check this view against its batch source's Arrow schema (the raw events).

        Without transforms or aggregations it resolves like a feature view (the ``_kafka_*``
        columns are never features). Otherwise the features are not columns of the source: the
        keys and times must be there, the udf is run on an empty frame of the source's columns to
        learn its output, aggregated columns must be numeric columns of that output, and derive,
        run on an empty frame of the aggregates, must give every feature. Raises
        :class:`DataSourceError` for a missing or mistyped column and :class:`DefinitionError`
        when a transform does not give what the view needs.
        """
        events = pa.schema([f for f in source_schema if f.name not in KAFKA_COLUMNS])
        if not self.is_computed:
            resolved = super().resolve(events)
            assert isinstance(resolved, StreamFeatureView)
            return resolved
        where = f"stream feature view '{self.name}'"
        src = self.batch_source
        columns = {src.field_mapping.get(n, n): events.field(n).type for n in events.names}
        for required in (src.timestamp_field, src.created_timestamp_column):
            if required and required not in columns:
                raise DataSourceError(
                    f"{where}: the source has no timestamp column '{required}'; columns: {sorted(columns)}"
                )
        missing = [k for k in self.join_keys if k not in columns]
        if missing:
            raise DataSourceError(f"{where}: the source has no join key columns {missing}")
        known = {f.name for f in self.entity_columns}
        keys = list(self.entity_columns) + [
            Field(name=k, dtype=dtype_from_arrow(columns[k])) for k in self.join_keys if k not in known
        ]
        after = columns if self.udf is None else _udf_columns(where, self.udf, events, columns)
        lost = [c for c in [*self.join_keys, src.timestamp_field] if c not in after]
        if lost:
            raise DefinitionError(f"{where}: udf {self.udf.qualname if self.udf else ''} drops the columns {lost}")
        features = self._resolved_features(where, after)
        return self._clone(keys + features)

    def _resolved_features(self, where: str, columns: Mapping[str, pa.DataType]) -> list[Field]:
        if not self.aggregations:  # rows as they are: the features are udf output columns
            skip = {*self.join_keys, self.batch_source.timestamp_field, self.batch_source.created_timestamp_column}
            features = self.features or [
                Field(name=n, dtype=dtype_from_arrow(t))
                for n, t in columns.items()
                if n not in skip and not pa.types.is_null(t)
            ]
            absent = [f.name for f in features if f.name not in columns]
            if absent:
                raise DefinitionError(f"{where}: features {absent} are not columns of the udf's output")
            return features
        for agg in self.aggregations:
            kind = columns.get(agg.column)
            if kind is None:
                raise DataSourceError(
                    f"{where}: aggregated column '{agg.column}' is not a column of the "
                    f"{'udf output' if self.udf else 'source'} ({', '.join(sorted(columns))})"
                )
            numeric = pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)
            if not (numeric or pa.types.is_null(kind) or agg.function == "count"):
                raise DataSourceError(f"{where}: aggregated column '{agg.column}' is {_dtype_name(kind)}, not a number")
        if self.derive is not None:
            import pandas as pd

            frame = pd.DataFrame(
                {a.name: pd.Series(dtype="int64" if a.function == "count" else "float64") for a in self.aggregations}
            )
            out = _run_empty(where, self.derive, frame)
            absent = [f for f in self.feature_names if f not in out.columns]
            if absent:
                raise DefinitionError(f"{where}: derive {self.derive.qualname} does not give the features {absent}")
        return list(self.features)

    def bind(self, repo_view: StreamFeatureView) -> StreamFeatureView:
        """This view with the live transform functions of the same view declared in the repo."""
        out = self._clone()
        if self.udf is not None:
            if repo_view.udf is None or repo_view.udf.fn is None:
                raise DefinitionError(f"stream feature view '{self.name}': the repo's version has no udf")
            out.udf = self.udf.bind(repo_view.udf.fn)
        if self.derive is not None:
            if repo_view.derive is None or repo_view.derive.fn is None:
                raise DefinitionError(f"stream feature view '{self.name}': the repo's version has no derive")
            out.derive = self.derive.bind(repo_view.derive.fn)
        return out

    def _clone(self, schema: list[Field] | None = None) -> StreamFeatureView:
        return StreamFeatureView(
            name=self.name,
            source=self.source,
            entities=self.entities,
            ttl=self.ttl,
            tags=self.tags,
            online=self.online,
            offline=self.offline,
            description=self.description,
            owner=self.owner,
            schema=self.entity_columns + self.features if schema is None else schema,
            aggregations=self.aggregations,
            mode=self.mode,
            udf=self.udf,
            derive=self.derive,
        )

    def _copy(self, schema: list[Field]) -> FeatureView:
        return self._clone(schema)

    def to_spec(self) -> dict[str, Any]:
        """JSON-ready spec: the feature view's, plus the stream parts."""
        return {
            **super().to_spec(),
            "stream": {
                "aggregations": [a.to_spec() for a in self.aggregations],
                "mode": self.mode,
                "udf": None if self.udf is None else self.udf.to_spec(),
                "derive": None if self.derive is None else self.derive.to_spec(),
            },
        }

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any], entities: Mapping[str, Entity]) -> StreamFeatureView:
        """Rebuild from :meth:`to_spec` output (transforms unbound)."""
        stream = spec["stream"]
        return cls(
            **cls._spec_args(spec, entities, "stream feature view"),
            aggregations=[Aggregation.from_spec(a) for a in stream["aggregations"]],
            mode=stream.get("mode", "pandas"),
            udf=None if stream.get("udf") is None else Udf.from_spec(stream["udf"]),
            derive=None if stream.get("derive") is None else Udf.from_spec(stream["derive"]),
        )

    def __repr__(self) -> str:
        return f"StreamFeatureView(name={self.name!r}, features={self.feature_names!r})"


def _dtype_name(kind: pa.DataType) -> str:
    try:
        return str(dtype_from_arrow(kind))
    except DefinitionError:
        return str(kind)


def _run_empty(where: str, fn: Udf, frame: pd.DataFrame) -> pd.DataFrame:
    """``fn`` run on an empty frame (to learn its columns); its errors as one-line DefinitionErrors."""
    import pandas as pd

    if fn.fn is None:
        raise DefinitionError(
            f"{where}: {fn.qualname} is not loaded (a view read from the registry); apply the feature repo's "
            "definition, or bind it first with ladle.repo.bind.bind_view"
        )
    try:
        out = fn(frame)
    except Exception as exc:  # user code: any failure is a definition error, reported in one line
        raise DefinitionError(
            f"{where}: {fn.qualname} fails on an empty frame of its input columns: {type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(out, pd.DataFrame):
        raise DefinitionError(f"{where}: {fn.qualname} returned {type(out).__name__}, not a pandas DataFrame")
    return out


def _udf_columns(where: str, udf: Udf, events: pa.Schema, columns: Mapping[str, pa.DataType]) -> dict[str, pa.DataType]:
    """The udf's output columns and types, from a run on an empty frame of the events.

    An empty object column has no Arrow type; a column the udf kept keeps its source type then.
    """
    frame = events.empty_table().rename_columns(list(columns)).to_pandas()
    out = _run_empty(where, udf, frame)
    try:
        schema = pa.Schema.from_pandas(out, preserve_index=False)
    except (pa.ArrowException, ValueError, TypeError) as exc:
        raise DefinitionError(f"{where}: udf {udf.qualname} returns columns Arrow cannot read: {exc}") from exc
    found: dict[str, pa.DataType] = {}
    for name, kind in zip(schema.names, schema.types, strict=True):
        found[name] = columns[name] if pa.types.is_null(kind) and name in columns else kind
    return found


def view_from_spec(spec: Mapping[str, Any], entities: Mapping[str, Entity]) -> FeatureView:
    """Rebuild a feature view or a stream feature view from its registry spec."""
    if "stream" in spec:
        return StreamFeatureView.from_spec(spec, entities)
    return FeatureView.from_spec(spec, entities)
