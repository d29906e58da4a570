"""Feast label views → Ladle feature views, the way the ``feast`` shim reads a ``LabelView`` in a repo.

A label view with ``LAST_WRITE_WINS`` (Feast's ``ConflictResolutionPolicy`` 0) serves the newest
label per entity, which is what a Ladle feature view over the same source does; its labeler field
and reference view are kept in the tag the shim writes (:data:`LABEL_VIEW_TAG`). Other policies
resolve labels by labeler in offline reads, which Ladle does not: they are reported, not imported.
The join keys' dtypes come from the source at apply, as for a repo's ``LabelView`` (Feast stores
``STRING`` for the entity column of a label view whose entity has no value type).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from ladle import definitions as lad
from ladle.errors import DefinitionError
from ladle.feast_import.mapping import DUMMY_ENTITY, Unmapped, field_from_proto, source_from_proto
from ladle.feast_shim.definitions import LABEL_VIEW_TAG

KIND = "label view"
_POLICIES = {0: "LAST_WRITE_WINS", 1: "LABELER_PRIORITY", 2: "MAJORITY_VOTE"}


def label_view_from_proto(
    message: Any, entities: Mapping[str, lad.Entity], sources: Mapping[str, lad.DataSource]
) -> lad.FeatureView:
    """A Feast ``LabelView`` as the feature view Ladle makes of it."""
    spec = message.spec
    name = spec.name
    if spec.conflict_policy != 0:
        policy = _POLICIES.get(spec.conflict_policy, str(spec.conflict_policy))
        raise Unmapped(KIND, name, f"conflict policy {policy} (Ladle serves the newest label: LAST_WRITE_WINS)")
    if not spec.HasField("source"):
        raise Unmapped(KIND, name, "it has no source (labels written only through the SDK)")
    names = [n for n in spec.entities if n != DUMMY_ENTITY]
    missing = [n for n in names if n not in entities]
    if missing or not names:
        raise Unmapped(KIND, name, f"its entities {missing or list(spec.entities)} were not imported")
    source = sources.get(spec.source.name) if spec.source.name else None
    if source is None:
        try:
            source = source_from_proto(spec.source)
        except Unmapped as exc:
            raise Unmapped(KIND, name, f"its source {exc.reason}") from None
    # Feast does not infer a label view's entity columns (it stores STRING for an untyped entity);
    # like the shim's LabelView in a repo, Ladle takes the join keys' dtypes from the source at apply.
    keys = {f.name for f in spec.entity_columns}
    schema = [field_from_proto(KIND, name, f) for f in spec.features if f.name not in keys]
    tags = dict(spec.tags)
    tags[LABEL_VIEW_TAG] = f"labeler_field={spec.labeler_field or 'labeler'}"
    if spec.reference_feature_view:
        tags[LABEL_VIEW_TAG] += f";reference_feature_view={spec.reference_feature_view}"
    try:
        return lad.FeatureView(
            name=name,
            source=source,
            schema=schema,
            entities=[entities[n] for n in names],
            ttl=timedelta(seconds=spec.ttl.seconds, microseconds=spec.ttl.nanos // 1000),
            online=spec.online,
            description=spec.description,
            tags=dict(sorted(tags.items())),
            owner=spec.owner,
        )
    except DefinitionError as exc:
        raise Unmapped(KIND, name, str(exc)) from None
