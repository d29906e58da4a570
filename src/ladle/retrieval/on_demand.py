"""On-demand feature views in retrieval: planning, running, historical frames, apply checks.

Online, a request that names an ODFV is planned as one store read of every feature it needs
(the requested views' features plus the ODFVs' inputs, internally under full names), followed by an
:class:`OnDemandStep` that runs each ODFV once over all rows (vectorized) and assembles Feast's
answer: join keys first, then the requested view features, then the ODFV outputs; inputs that
were not requested and request fields are dropped. Request fields come from the entity rows.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ladle.definitions import FeatureService, OnDemandFeatureView
from ladle.definitions.refs import resolve
from ladle.errors import (
    FeatureNameCollisionError,
    InvalidFeatureReferenceError,
    RequestDataNotFoundError,
)
from ladle.types import DType, FieldStatus

if TYPE_CHECKING:
    import pandas as pd

    from ladle.registry.base import RegistrySnapshot
    from ladle.retrieval.plan import OnlinePlan
    from ladle.retrieval.response import OnlineResponse

_PRESENT = int(FieldStatus.PRESENT)
_NULL = int(FieldStatus.NULL_VALUE)


@dataclass(frozen=True)
class OdfvCall:
    """One ODFV of a request: its inputs (``(bare name, full name, read column)``), request fields
    and the outputs asked for (``(output, response name)``)."""

    odfv: OnDemandFeatureView
    view_columns: tuple[tuple[str, str, str], ...]
    request_fields: tuple[str, ...]
    outputs: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class OnDemandStep:
    """Turns the store read of a plan into the answer (see the module docstring)."""

    keep: tuple[tuple[int, str], ...]  # (read column index, response name): join keys and requested features
    calls: tuple[OdfvCall, ...]
    names: tuple[str, ...]
    dtypes: dict[str, DType]
    #: The request fields the ODFVs read, with their declared dtypes (the CLI types text with them).
    request_types: dict[str, DType] = field(default_factory=dict)

    def apply(self, base: OnlineResponse, column: Callable[[str], Sequence[Any]], rows: int) -> OnlineResponse:
        """The answer for ``rows`` rows; ``column`` gives a request column by name."""
        from ladle.retrieval.response import OnlineResponse

        index = {n: i for i, n in enumerate(base.feature_names)}
        values = [base.values[i] for i, _ in self.keep]
        statuses = [base.statuses[i] for i, _ in self.keep]
        stamps = [base.event_timestamps[i] for i, _ in self.keep]
        for call in self.calls:
            inputs: dict[str, Sequence[Any]] = {}
            stamp_lists = []
            for bare, full, read_name in call.view_columns:
                col = base.values[index[read_name]]
                inputs[bare] = inputs[full] = col
                stamp_lists.append(base.event_timestamps[index[read_name]])
            for name in call.request_fields:
                try:
                    inputs[name] = list(column(name))
                except KeyError:
                    raise _missing(call.odfv, name) from None
            out = call.odfv.transform(inputs, rows)
            ts = [max(t) for t in zip(*stamp_lists, strict=True)] if stamp_lists else [0] * rows
            for output, _ in call.outputs:
                col = out[output]
                values.append(col)
                statuses.append([_NULL if v is None else _PRESENT for v in col])
                stamps.append(ts)
        return OnlineResponse(list(self.names), values, statuses, stamps, base=base)


def _missing(odfv: OnDemandFeatureView, name: str) -> RequestDataNotFoundError:
    return RequestDataNotFoundError(
        f"on-demand feature view '{odfv.name}' needs request field '{name}': add it to the entity rows"
    )


def names_on_demand(snapshot: RegistrySnapshot, features: Any) -> bool:
    """Whether ``features`` (references, a feature service or its name) names an on-demand view."""
    odfvs = snapshot.on_demand_feature_views
    if not odfvs:
        return False
    if isinstance(features, FeatureService | str):
        service = features if isinstance(features, FeatureService) else snapshot.feature_services.get(features)
        return service is not None and any(p.view_name in odfvs for p in service.projections)
    return any(isinstance(r, str) and r.partition(":")[0] in odfvs for r in features)


def service_refs(snapshot: RegistrySnapshot, features: Any) -> Any:
    """``features`` with a feature service (or its name) that uses ODFVs spelled out as references.

    Projections of plain views must then be plain (no ``with_name`` alias, no join-key map):
    an InvalidFeatureReferenceError says so otherwise.
    """
    if not isinstance(features, FeatureService | str):
        return features
    service = features if isinstance(features, FeatureService) else snapshot.feature_service(features)
    for p in service.projections:
        if p.alias or p.join_key_map:
            raise InvalidFeatureReferenceError(
                f"feature service '{service.name}' mixes on-demand views with a renamed projection of "
                f"'{p.view_name}' (with_name / with_join_key_map), which Ladle cannot serve together yet"
            )
    return [f"{p.view_name}:{f}" for p in service.projections for f in p.features]


def split_refs(snapshot: RegistrySnapshot, refs: Sequence[str]) -> tuple[list[str], dict[str, list[str]]]:
    """``(view references, {odfv name: outputs asked for})`` in request order."""
    odfvs = snapshot.on_demand_feature_views
    plain: list[str] = []
    wanted: dict[str, list[str]] = {}
    for ref in refs:
        if not isinstance(ref, str) or ref.count(":") > 1:
            raise InvalidFeatureReferenceError(f"feature reference {ref!r} is malformed: use 'view:feature'")
        name, _, feature = ref.partition(":")
        odfv = odfvs.get(name)
        if odfv is None:
            plain.append(ref)
            continue
        if feature:
            odfv.feature(feature)  # FeatureNotFoundError
        chosen = wanted.setdefault(name, [])
        for f in [feature] if feature else odfv.feature_names:
            if f not in chosen:
                chosen.append(f)
    return plain, wanted


def input_refs(snapshot: RegistrySnapshot, wanted: dict[str, list[str]]) -> list[str]:
    """The ``view:feature`` references the ODFVs in ``wanted`` read."""
    return [r for name in wanted for r in snapshot.on_demand_feature_views[name].input_refs()]


def compile_on_demand(
    snapshot: RegistrySnapshot,
    features: Sequence[str] | FeatureService | str,
    full: bool,
    names: tuple[str, ...],
    compile_base: Callable[[RegistrySnapshot, Any, bool, tuple[str, ...]], OnlinePlan],
) -> OnlinePlan:
    """The plan of a request naming ODFVs: the base read (full names) with an :class:`OnDemandStep`."""
    from ladle.retrieval.plan import OnlinePlan

    plain, every = split_refs(snapshot, service_refs(snapshot, features))
    odfvs = snapshot.on_demand_feature_views
    # write_to_online_store ODFVs are read like views (their stored outputs); the others are computed.
    stored = {n: outs for n, outs in every.items() if odfvs[n].write_to_online_store}
    wanted = {n: outs for n, outs in every.items() if n not in stored}
    read_snapshot = snapshot
    if stored:
        extra = {n: odfvs[n].stored_view(snapshot.feature_views) for n in stored}
        rest = {n: o for n, o in odfvs.items() if n not in stored}
        read_snapshot = dataclasses.replace(
            snapshot, feature_views={**snapshot.feature_views, **extra}, on_demand_feature_views=rest
        )
    stored_refs = [f"{n}:{o}" for n, outs in stored.items() for o in outs]
    read_refs = list(dict.fromkeys([*plain, *input_refs(snapshot, wanted), *stored_refs]))
    if read_refs:
        base = compile_base(read_snapshot, read_refs, True, names)
    else:
        base = OnlinePlan(snapshot.project, snapshot.version, (), {}, (), (), (), False, False)
    index = {n: i for i, n in enumerate(base.feature_names)}
    keep = [(i, n) for i, n in enumerate(base.key_columns)]
    dtypes = {n: d for n, d in zip(base.feature_names, base.dtypes, strict=True) if d is not None}
    out_types: dict[str, DType] = {n: dtypes[n] for n in base.key_columns if n in dtypes}
    if plain:
        for sel in resolve(snapshot, plain, full):
            for feature, out in zip(sel.features, sel.output_names(full), strict=True):
                read_name = f"{sel.view.name}__{feature}"
                keep.append((index[read_name], out))
                out_types[out] = dtypes[read_name]
    for name, outputs in stored.items():
        for o in outputs:
            response_name = f"{name}__{o}" if full else o
            keep.append((index[f"{name}__{o}"], response_name))
            out_types[response_name] = odfvs[name].feature(o).dtype
    calls = []
    for name, outputs in wanted.items():
        odfv = snapshot.on_demand_feature_views[name]
        for fld in odfv.request_fields:
            if fld.name not in names:
                raise _missing(odfv, fld.name)
        cols = tuple((f, f"{v.name_to_use}__{f}", f"{v.view_name}__{f}") for v in odfv.view_inputs for f in v.features)
        pairs = tuple((o, f"{name}__{o}" if full else o) for o in outputs)
        for o, response_name in pairs:
            out_types[response_name] = odfv.feature(o).dtype
        calls.append(OdfvCall(odfv, cols, tuple(f.name for f in odfv.request_fields), pairs))
    final = tuple([n for _, n in keep] + [r for c in calls for _, r in c.outputs])
    dupes = sorted({n for n in final if final.count(n) > 1})
    if dupes:
        raise FeatureNameCollisionError(
            f"feature names {dupes} are requested more than once; pass full_feature_names=True to name columns "
            "'view__feature'"
        )
    request_types = {f.name: f.dtype for c in calls for f in c.odfv.request_fields}
    step = OnDemandStep(tuple(keep), tuple(calls), final, out_types, request_types)
    return OnlinePlan(
        base.project, base.version, base.key_columns, base.key_types, base.reads, base.feature_names,
        base.dtypes, base.uses_ttl, base.entityless, on_demand=step,
    )  # fmt: skip


# -- historical ---------------------------------------------------------------------------------


def transform_frame(
    frame: pd.DataFrame, snapshot: RegistrySnapshot, wanted: dict[str, list[str]], full: bool
) -> pd.DataFrame:
    """Add the outputs of the ODFVs in ``wanted`` to a training frame holding their inputs under
    full names (``view__feature``) and their request fields (from the entity frame)."""
    for name, outputs in wanted.items():
        odfv = snapshot.on_demand_feature_views[name]
        inputs: dict[str, Sequence[Any]] = {}
        for v in odfv.view_inputs:
            for f in v.features:
                col = frame[f"{v.view_name}__{f}"].astype(object).where(frame[f"{v.view_name}__{f}"].notna(), None)
                inputs[f] = inputs[f"{v.name_to_use}__{f}"] = col.tolist()
        for fld in odfv.request_fields:
            if fld.name not in frame.columns:
                raise RequestDataNotFoundError(
                    f"on-demand feature view '{name}' needs request field '{fld.name}': add it to the entity frame"
                )
            inputs[fld.name] = frame[fld.name].tolist()
        out = odfv.transform(inputs, len(frame))
        for o in outputs:
            frame[f"{name}__{o}" if full else o] = out[o]
    return frame
