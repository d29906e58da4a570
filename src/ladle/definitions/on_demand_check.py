"""Apply-time checks of on-demand feature views: inputs exist, and the stored function runs on one row."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ladle.definitions.on_demand import OnDemandFeatureView, ViewInput
from ladle.errors import DefinitionError, FeatureNotFoundError
from ladle.types import DType


def check_on_demand_views(target: Mapping[Any, Mapping[str, Any]]) -> None:
    """Every ODFV's inputs exist after the apply, and its function runs on one row and returns its schema."""
    views: Mapping[str, Any] = target.get("feature_view", {})
    odfvs: Mapping[str, OnDemandFeatureView] = target.get("on_demand_feature_view", {})
    for name, odfv in odfvs.items():
        if name in views:
            raise DefinitionError(f"'{name}' is both a feature view and an on-demand feature view")
        if odfv.write_to_online_store and (len(odfv.view_inputs) != 1 or odfv.request_sources):
            raise DefinitionError(
                f"on-demand feature view '{name}': write_to_online_store=True needs exactly one feature view "
                "source and no RequestSource (its outputs are computed when that view's rows are written); "
                "leave it False to compute at read time"
            )
        inputs: dict[str, list[Any]] = {}
        for i, v in enumerate(odfv.view_inputs):
            view = views.get(v.view_name)
            if view is None:
                raise DefinitionError(
                    f"on-demand feature view '{name}' reads feature view '{v.view_name}', which does not exist"
                )
            if not v.features:  # a whole view declared before its schema was read from the source
                v = odfv.view_inputs[i] = ViewInput(v.view_name, tuple(view.feature_names), v.alias)  # noqa: PLW2901
            for f in v.features:
                try:
                    sample = _sample(view.feature(f).dtype)
                except FeatureNotFoundError:
                    raise DefinitionError(
                        f"on-demand feature view '{name}': feature view '{v.view_name}' has no feature '{f}'"
                    ) from None
                inputs[f] = inputs[f"{v.name_to_use}__{f}"] = [sample]
        for fld in odfv.request_fields:
            inputs[fld.name] = [_sample(fld.dtype)]
        # The function as a server will run it: compiled from the stored source, not the live one.
        stored = OnDemandFeatureView.from_spec(odfv.to_spec())
        try:
            stored.transform(inputs, 1)
        except DefinitionError as exc:
            raise DefinitionError(f"dry run on one row: {exc}") from exc


def _sample(dtype: DType) -> Any:
    """A plausible non-null value of ``dtype`` for a dry run."""
    samples: dict[str, Any] = {
        "INT32": 1, "INT64": 1, "DOUBLE": 1.0, "FLOAT": 1.0, "BOOL": True, "STRING": "a", "BYTES": b"a",
        "UNIX_TIMESTAMP": 0,
    }  # fmt: skip
    name = dtype.value_type.name
    if name.endswith("_LIST"):
        return [samples.get(name[:-5])]
    return samples.get(name)
