"""``OnDemandFeatureView``: features computed at request time from other views and request data.

Feast's semantics (``@on_demand_feature_view(sources=[...], schema=[...], mode=...)``):

* ``sources`` are feature views, projections ``fv[["a"]]`` and :class:`RequestSource` objects.
* ``mode="pandas"``: the function takes one DataFrame holding every input for all rows and returns a
  DataFrame with the ``schema`` columns (vectorized). ``mode="python"``: it takes a dict of column
  lists and returns a dict of column lists (also vectorized); with ``singleton=True`` it takes and
  returns one row as a dict of scalars and is called once per row.
* A feature-view input is offered under its bare name (``conv_rate``) and its full name
  (``driver_stats__conv_rate``); a request field under its own name.

The function is kept in the registry as source text, together with the import statements of the
file that defined it, so a server that reads the registry can run it without the repo. Trust model:
as with Feast (which stores it pickled), whoever can apply to the registry runs code in every process
that serves from it; guard the registry like the code it holds (docs/on-demand.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ladle.definitions._common import check_name, check_str, check_tags, common_args, common_spec
from ladle.definitions.feature_view import FeatureView, FeatureViewProjection
from ladle.definitions.field import Field
from ladle.definitions.sources import RequestSource
from ladle.definitions.transform_udf import TransformUdf
from ladle.errors import DefinitionError, FeatureNotFoundError

Mode = Literal["pandas", "python"]
_MODES = ("pandas", "python")


@dataclass(frozen=True)
class ViewInput:
    """A feature-view source of an ODFV: which view, which features, under which name."""

    view_name: str
    features: tuple[str, ...]
    alias: str | None = None

    @property
    def name_to_use(self) -> str:
        """The prefix of the full input names (``alias`` or the view's name)."""
        return self.alias or self.view_name

    def to_spec(self) -> dict[str, Any]:
        """JSON-ready spec."""
        return {"type": "feature_view", "view": self.view_name, "features": list(self.features), "alias": self.alias}


class OnDemandFeatureView:
    """Features computed from other views' features and request data (see the module docstring).

    >>> @on_demand_feature_view(sources=[driver_stats, order], schema=[Field(name="ratio", dtype=Float64)])
    ... def ratio(inputs: pd.DataFrame) -> pd.DataFrame:
    ...     return pd.DataFrame({"ratio": inputs["conv_rate"] / inputs["amount"]})
    """

    kind = "on-demand feature view"

    def __init__(
        self,
        name: str,
        schema: Sequence[Field],
        sources: Sequence[FeatureView | FeatureViewProjection | RequestSource],
        udf: Callable[..., Any] | TransformUdf,
        mode: Mode = "pandas",
        description: str = "",
        tags: Mapping[str, str] | None = None,
        owner: str = "",
        write_to_online_store: bool = False,
        singleton: bool = False,
    ) -> None:
        self.name = check_name(self.kind, name)
        what = f"{self.kind} '{name}'"
        if mode not in _MODES:
            raise DefinitionError(f"{what}: mode must be 'pandas' or 'python', got {mode!r}")
        if singleton and mode != "python":
            raise DefinitionError(f"{what}: singleton=True needs mode='python'")
        self.mode: Mode = mode
        self.singleton = bool(singleton)
        self.write_to_online_store = bool(write_to_online_store)
        self.schema = list(schema or [])
        if not self.schema or not all(isinstance(f, Field) for f in self.schema):
            raise DefinitionError(f"{what}: schema must be a non-empty list of Field")
        names = [f.name for f in self.schema]
        if len(set(names)) != len(names):
            raise DefinitionError(f"{what}: schema names a field twice: {names}")
        self.view_inputs: list[ViewInput] = []
        self.request_sources: list[RequestSource] = []
        for source in sources or []:
            self._add_source(what, source)
        if not self.view_inputs and not self.request_sources:
            raise DefinitionError(f"{what}: sources must list at least one feature view or RequestSource")
        self.udf = udf if isinstance(udf, TransformUdf) else TransformUdf.from_function(what, udf)
        self.description = check_str(self.kind, name, "description", description)
        self.tags = check_tags(self.kind, name, tags)
        self.owner = check_str(self.kind, name, "owner", owner)

    def _add_source(self, what: str, source: object) -> None:
        if isinstance(source, RequestSource):
            self.request_sources.append(source)
        elif isinstance(source, FeatureView):
            # A view whose features come from its source's schema has none yet: apply fills them in.
            self.view_inputs.append(ViewInput(source.name, tuple(source.feature_names)))
        elif isinstance(source, FeatureViewProjection):
            self.view_inputs.append(ViewInput(source.view_name, tuple(source.features), source.alias))
        elif isinstance(source, ViewInput):
            self.view_inputs.append(source)
        else:
            raise DefinitionError(
                f"{what}: sources must be feature views, projections fv[[...]] or RequestSource, got {source!r}"
            )

    # -- what it reads and writes ---------------------------------------------------------------
    @property
    def feature_names(self) -> list[str]:
        """The output features' names."""
        return [f.name for f in self.schema]

    def feature(self, name: str) -> Field:
        """The output field called ``name``; FeatureNotFoundError otherwise."""
        for f in self.schema:
            if f.name == name:
                return f
        raise FeatureNotFoundError(f"{self.name}:{name}", detail=f"'{self.name}' outputs {self.feature_names}")

    def __getitem__(self, features: Sequence[str]) -> FeatureViewProjection:
        """A selection of outputs for a feature service: ``odfv[["a", "b"]]``."""
        for name in features:
            self.feature(name)
        return FeatureViewProjection(self.name, tuple(features))

    def projection(self) -> FeatureViewProjection:
        """Every output, for a feature service."""
        return FeatureViewProjection(self.name, tuple(self.feature_names))

    def stored_view(self, views: Mapping[str, FeatureView]) -> FeatureView:
        """With ``write_to_online_store``: the view its outputs are stored online under (its name, its
        source view's entities, ttl and source, its output schema)."""
        source = views[self.view_inputs[0].view_name]
        return FeatureView(
            name=self.name, source=source.source, schema=[*source.entity_columns, *self.schema],
            entities=source.entities, ttl=source.ttl, online=True, tags=self.tags,
        )  # fmt: skip

    @property
    def request_fields(self) -> list[Field]:
        """Every field the request must carry."""
        return [f for s in self.request_sources for f in s.schema]

    def input_refs(self) -> list[str]:
        """``view:feature`` of every feature-view input."""
        return [f"{v.view_name}:{f}" for v in self.view_inputs for f in v.features]

    # -- running it ---------------------------------------------------------------------------------
    def transform(self, inputs: Mapping[str, Sequence[Any]], rows: int) -> dict[str, list[Any]]:
        """Run the function over ``rows`` rows of ``inputs`` (column lists); ``{output: values}``.

        Raises :class:`DefinitionError` if the function fails or returns the wrong columns.
        """
        fn = self.udf.load()
        try:
            if self.mode == "pandas":
                import pandas as pd

                out = fn(pd.DataFrame({k: list(v) for k, v in inputs.items()}, index=range(rows)))
                columns = {c: out[c].tolist() for c in self.feature_names if c in getattr(out, "columns", ())}
            elif self.singleton:
                results = [fn({k: v[i] for k, v in inputs.items()}) for i in range(rows)]
                columns = {c: [r[c] for r in results] for c in self.feature_names if all(c in r for r in results)}
            else:
                out = fn({k: list(v) for k, v in inputs.items()})
                columns = {c: list(out[c]) for c in self.feature_names if c in out}
        except DefinitionError:
            raise
        except Exception as exc:  # user code can raise anything: name the view, keep the cause
            raise DefinitionError(f"{self.kind} '{self.name}' failed: {type(exc).__name__}: {exc}") from exc
        missing = [c for c in self.feature_names if c not in columns]
        if missing:
            raise DefinitionError(f"{self.kind} '{self.name}' did not return its schema columns {missing}")
        short = {c: len(v) for c, v in columns.items() if len(v) != rows}
        if short:
            raise DefinitionError(f"{self.kind} '{self.name}' returned {short} values for {rows} rows")
        return {c: _cleaned(columns[c], f) for c, f in zip(self.feature_names, self.schema, strict=True)}

    # -- registry form ------------------------------------------------------------------------------
    def to_spec(self) -> dict[str, Any]:
        """JSON-ready spec as stored in the registry."""
        sources: list[dict[str, Any]] = [v.to_spec() for v in self.view_inputs]
        sources += [s.to_spec() for s in self.request_sources]
        return {
            "name": self.name,
            "schema": [f.to_spec() for f in self.schema],
            "sources": sources,
            "mode": self.mode,
            "singleton": self.singleton,
            "write_to_online_store": self.write_to_online_store,
            "udf": self.udf.to_spec(),
            **common_spec(self),
        }

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> OnDemandFeatureView:
        """Rebuild from :meth:`to_spec` output."""
        sources: list[Any] = []
        for s in spec["sources"]:
            if s["type"] == "feature_view":
                sources.append(ViewInput(s["view"], tuple(s["features"]), s.get("alias")))
            else:
                sources.append(RequestSource.from_spec(s))
        return cls(
            name=spec["name"],
            schema=[Field.from_spec(f) for f in spec["schema"]],
            sources=sources,
            udf=TransformUdf.from_spec(spec["udf"]),
            mode=spec.get("mode", "pandas"),
            write_to_online_store=spec.get("write_to_online_store", False),
            singleton=spec.get("singleton", False),
            **common_args(spec),
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, OnDemandFeatureView) and self.to_spec() == other.to_spec()

    def __hash__(self) -> int:
        return hash((self.kind, self.name))

    def __repr__(self) -> str:
        return f"OnDemandFeatureView(name={self.name!r}, mode={self.mode!r})"


def _cleaned(values: list[Any], fld: Field) -> list[Any]:
    """Values as plain Python of the field's type; NaN and missing become None."""
    vt = fld.dtype.value_type.name
    cast: Callable[[Any], Any] | None = {
        "INT32": int, "INT64": int, "DOUBLE": float, "FLOAT": float, "BOOL": bool, "STRING": str,
    }.get(vt)  # fmt: skip
    out: list[Any] = []
    for v in values:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            out.append(None)
        elif cast is not None:
            try:
                out.append(cast(v.item() if hasattr(v, "item") else v))
            except (TypeError, ValueError):
                raise DefinitionError(f"output '{fld.name}' is {fld.dtype} but the function returned {v!r}") from None
        else:
            out.append(v.tolist() if hasattr(v, "tolist") else v)
    return out


def on_demand_feature_view(
    *,
    schema: Sequence[Field],
    sources: Sequence[FeatureView | FeatureViewProjection | RequestSource],
    mode: Mode = "pandas",
    name: str | None = None,
    description: str = "",
    tags: Mapping[str, str] | None = None,
    owner: str = "",
    write_to_online_store: bool = False,
    singleton: bool = False,
    entities: Sequence[Any] | None = None,
    track_metrics: bool = False,
) -> Callable[[Callable[..., Any]], OnDemandFeatureView]:
    """Feast's decorator: the decorated function becomes an :class:`OnDemandFeatureView` of its name.

    ``entities`` and ``track_metrics`` are accepted for Feast's signature and must be left out
    (Ladle's ODFVs are keyed by their feature-view sources, and have no per-ODFV timing metrics).
    """
    if entities:
        raise DefinitionError("on_demand_feature_view: entities= is not supported; the sources' entities are used")
    if track_metrics:
        raise DefinitionError(
            "on_demand_feature_view: track_metrics=True is not supported (no per-ODFV timing metrics)"
        )

    def decorate(fn: Callable[..., Any]) -> OnDemandFeatureView:
        return OnDemandFeatureView(
            name=name or fn.__name__, schema=schema, sources=sources, udf=fn, mode=mode,
            description=description, tags=tags, owner=owner,
            write_to_online_store=write_to_online_store, singleton=singleton,
        )  # fmt: skip

    return decorate
