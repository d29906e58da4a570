"""Checks run before anything is written: views resolved against their sources, references intact.

The *target* is the state the registry would be in after the apply, ``{kind: {name: object}}``.
Every reference is checked against it, so an apply can neither leave a view pointing at a removed
entity nor a feature service pointing at a missing feature.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from ladle.definitions import (
    DataSource,
    Entity,
    FeatureService,
    FeatureView,
    FeatureViewProjection,
    KafkaSource,
    PushSource,
)
from ladle.definitions.feature_service import parse_pinned
from ladle.errors import DataSourceError, DefinitionError
from ladle.registry.base import Kind, RegistrySnapshot, canonical_spec, content_hash
from ladle.types import JOIN_KEY_TYPES, compatible, dtype_from_arrow

if TYPE_CHECKING:
    from ladle.offline.base import OfflineStore

Target = dict[Kind, dict[str, Any]]

_SKIP_HINT = "or drop --skip-source-validation so it is read from the source"


def resolve_views(
    offline_store: OfflineStore, views: Sequence[FeatureView], skip_source_validation: bool
) -> dict[str, FeatureView]:
    """Each view checked against (and completed from) its batch source's schema.

    With ``skip_source_validation`` no source is read: the view must already say everything
    (join-key dtypes from the schema or from the entities' ``value_type``, and its features).
    """
    out: dict[str, FeatureView] = {}
    schemas: dict[str, pa.Schema] = {}
    for view in views:
        if skip_source_validation:
            _check_self_contained(view)
            resolved = view
        else:
            key = content_hash(view.batch_source.to_spec())
            if key not in schemas:
                schemas[key] = _source_schema(offline_store, view)
            _check_join_key_columns(view, schemas[key])
            resolved = view.resolve(schemas[key])
        for column in resolved.entity_columns:
            if column.dtype.value_type not in JOIN_KEY_TYPES:
                raise DefinitionError(
                    f"feature view '{view.name}': join key '{column.name}' is {column.dtype}; "
                    "join keys must be String, Int32, Int64 or Bytes"
                )
        out[view.name] = resolved
    return out


def _source_schema(offline_store: OfflineStore, view: FeatureView) -> pa.Schema:
    """The batch source's schema; for a Kafka source whose events are not stored yet, its message format's."""
    try:
        return offline_store.source_schema(view.batch_source)
    except DataSourceError as exc:
        declared = _format_schema(view)
        if declared is not None:
            return declared
        raise DataSourceError(
            f"feature view '{view.name}': {exc} (to apply without reading sources, use --skip-source-validation)"
        ) from exc


def _format_schema(view: FeatureView) -> pa.Schema | None:
    """The columns a Kafka source's message format declares (after its field mapping), if it declares any.

    The stream process creates the batch source's files as events arrive, so before the first one
    the declared format is all there is to check the view against.
    """
    source = view.source
    if not isinstance(source, KafkaSource) or not source.message_format.fields():
        return None
    rename = source.field_mapping
    return pa.schema([pa.field(rename.get(n, n), dtype.arrow) for n, dtype in source.message_format.fields()])


def _check_self_contained(view: FeatureView) -> None:
    if not view.is_resolved:
        known = {c.name for c in view.entity_columns}
        unknown = [e for e in view.entities if e.join_key not in known]
        names = ", ".join(f"'{e.join_key}' (entity '{e.name}')" for e in unknown)
        raise DefinitionError(
            f"feature view '{view.name}': the dtype of join key {names} is unknown; give the entity a "
            f"value_type, declare the key in the view's schema, {_SKIP_HINT}"
        )
    if not view.features:
        raise DefinitionError(
            f"feature view '{view.name}' declares no features; list them in schema=[...] {_SKIP_HINT}"
        )


def _check_join_key_columns(view: FeatureView, schema: pa.Schema) -> None:
    """Declared join-key dtypes must match the source (``resolve`` checks only features)."""
    src = view.batch_source
    columns = {src.field_mapping.get(n, n): schema.field(n).type for n in schema.names}
    for column in view.entity_columns:
        if column.name not in columns:
            continue  # resolve() reports the missing column with the source's name
        actual = dtype_from_arrow(columns[column.name])
        if not compatible(column.dtype, actual):
            raise DataSourceError(
                f"feature view '{view.name}': join key column '{column.name}' is {actual} in the source "
                f"but the view or its entity says {column.dtype}"
            )


def validate_target(target: Target, base: RegistrySnapshot) -> Target:
    """Check every reference in ``target``; return it with feature service projections made explicit."""
    for view in target["feature_view"].values():
        _check_view_entities(view, target, base)
        _check_view_sources(view, target)
    services = {name: _checked_service(s, target) for name, s in target["feature_service"].items()}
    from ladle.definitions.on_demand_check import check_on_demand_views

    check_on_demand_views(target)
    return {**target, "feature_service": services}


def _check_view_entities(view: FeatureView, target: Target, base: RegistrySnapshot) -> None:
    for entity in view.entities:
        current: Entity | None = target["entity"].get(entity.name)
        if current is None:
            why = "this apply removes it" if entity.name in base.entities else "it is not defined in the repo"
            raise DefinitionError(f"feature view '{view.name}' uses entity '{entity.name}', but {why}")
        if (current.join_key, current.value_type) != (entity.join_key, entity.value_type):
            raise DefinitionError(
                f"feature view '{view.name}' was defined with entity '{entity.name}' keyed on "
                f"'{entity.join_key}' ({_vt(entity)}), but the entity being registered is keyed on "
                f"'{current.join_key}' ({_vt(current)}); apply the view together with the entity"
            )


def _vt(entity: Entity) -> str:
    return entity.value_type.name if entity.value_type is not None else "value type inferred"


def _check_view_sources(view: FeatureView, target: Target) -> None:
    sources: list[DataSource] = [view.source]
    if isinstance(view.source, (PushSource, KafkaSource)):
        sources.append(view.source.batch_source)
    for source in sources:
        if not source.name:
            continue
        current: DataSource | None = target["data_source"].get(source.name)
        if current is None:
            raise DefinitionError(
                f"feature view '{view.name}' reads data source '{source.name}', which this apply removes"
            )
        if canonical_spec(current.to_spec()) != canonical_spec(source.to_spec()):
            raise DefinitionError(
                f"feature view '{view.name}' was defined with a different version of data source "
                f"'{source.name}' than the one being registered; apply the view together with the source"
            )


def _checked_service(service: FeatureService, target: Target) -> FeatureService:
    projections: list[FeatureViewProjection] = []
    for proj in service.projections:
        odfv = target["on_demand_feature_view"].get(proj.view_name)
        if odfv is not None:  # an on-demand view's outputs
            missing = [f for f in proj.features if f not in odfv.feature_names]
            if missing:
                raise DefinitionError(
                    f"feature service '{service.name}': on-demand feature view '{odfv.name}' has no features {missing}"
                )
            projections.append(FeatureViewProjection(proj.view_name, proj.features or tuple(odfv.feature_names)))
            continue
        view: FeatureView | None = target["feature_view"].get(proj.view_name)
        if view is None:
            raise DefinitionError(
                f"feature service '{service.name}' uses feature view '{proj.view_name}', which does not exist "
                "after this apply"
            )
        # A pinned view is checked against its pinned version by the pin check of plan/apply.
        missing = [f for f in proj.features if f not in view.feature_names and proj.view_name not in service.pins]
        if missing:
            raise DefinitionError(
                f"feature service '{service.name}': feature view '{view.name}' has no features {missing}; "
                f"it has {view.feature_names}"
            )
        features = proj.features or tuple(view.feature_names)
        projections.append(FeatureViewProjection(proj.view_name, features, proj.alias, dict(proj.join_key_map)))
    for arm, (target_name, _) in service.variants.items():
        arm_service = target["feature_service"].get(parse_pinned(target_name)[0])
        if arm_service is None or arm_service.is_split:
            what = "does not exist after this apply" if arm_service is None else "is itself a split"
            raise DefinitionError(
                f"feature service '{service.name}': variant '{arm}' uses feature service '{target_name}', which {what}"
            )
    return FeatureService(
        name=service.name,
        features=projections,
        description=service.description,
        tags=service.tags,
        owner=service.owner,
        pins=service.pins,
        variants=service.variants,
        logging_config=service.logging_config,
    )
