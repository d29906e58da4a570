"""``ladle entities | feature-views | feature-services | data-sources``: browse registered definitions."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

import click
import yaml

from ladle.cli.context import CliContext, emit, output_option, pass_context, user_errors
from ladle.definitions import (
    AuthzedAction,
    DataSource,
    Definition,
    DorisSource,
    Entity,
    FeatureService,
    FeatureView,
    FileSource,
    IcebergSource,
    KafkaSource,
    Permission,
    PushSource,
    StreamFeatureView,
)
from ladle.errors import FeatureViewNotFoundError
from ladle.registry.base import Kind, ObjectVersion, RegistrySnapshot

T = TypeVar("T", Entity, DataSource, FeatureView, FeatureService, Permission)


def _parse_tags(_ctx: click.Context, _param: click.Parameter, values: Sequence[str]) -> dict[str, str]:
    tags: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition(":")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not of the form key:value")
        tags[key] = value
    return tags


tags_option = click.option(
    "--tags",
    multiple=True,
    callback=_parse_tags,
    metavar="KEY:VALUE",
    help="Only objects with this tag (repeat for several; all must match).",
)


def with_tags(objects: Iterable[T], tags: Mapping[str, str]) -> list[T]:
    """Objects carrying every ``key: value`` of ``tags``, sorted by name."""
    return sorted(
        (o for o in objects if all(o.tags.get(k) == v for k, v in tags.items())),
        key=lambda o: o.name,
    )


def _time(value: datetime | None) -> str:
    return "" if value is None else value.strftime("%Y-%m-%d %H:%M:%S")


def list_objects(
    ctx: CliContext,
    select: Callable[[RegistrySnapshot], Mapping[str, T]],
    row: Callable[[T], dict[str, Any]],
    tags: Mapping[str, str],
    output: str,
    title: str,
) -> None:
    """Print the objects ``select`` picks that carry ``tags`` and that the caller may DESCRIBE."""
    with user_errors():
        store = ctx.store()
        snapshot = store.snapshot(allow_cache=False)
        visible = store.enforcer.permitted(snapshot, store.principal, AuthzedAction.DESCRIBE, select(snapshot).values())
        objects = with_tags(visible, tags)
    if output == "json":
        click.echo(json.dumps([o.to_spec() for o in objects], indent=2, default=str))
    else:
        emit([row(o) for o in objects], output, title)


def describe_object(ctx: CliContext, kind: Kind, name: str, output: str) -> None:
    """Print one object's spec and its current version (DESCRIBE is checked by the store)."""
    with user_errors():
        store = ctx.store()
        getters: dict[Kind, Callable[[str], Definition]] = {
            "entity": store.get_entity,
            "data_source": store.get_data_source,
            "feature_view": store.get_feature_view,
            "feature_service": store.get_feature_service,
            "permission": store.get_permission,
        }
        spec = getters[kind](name).to_spec()
        history = store.registry.history(kind, name)
        watermark = store.registry.watermark(name) if kind == "feature_view" else None
    meta: dict[str, Any] = {}
    if history:
        last = history[-1]
        meta = {"version": last.version, "applied_at": last.applied_at.isoformat(), "applied_by": last.applied_by}
    if kind == "feature_view":
        meta["materialized_until"] = watermark.isoformat() if watermark else None
    if output == "json":
        click.echo(json.dumps({"spec": spec, "meta": meta}, indent=2, default=str))
        return
    click.echo(yaml.safe_dump({"spec": spec, "meta": meta}, sort_keys=False).rstrip())


# -- entities ---------------------------------------------------------------------------------
@click.group("entities")
def entities() -> None:
    """Browse entities."""


def _entity_row(e: Entity) -> dict[str, Any]:
    vt = e.value_type.name if e.value_type is not None else ""
    return {"name": e.name, "join key": e.join_key, "value type": vt, "description": e.description, "tags": e.tags}


@entities.command("list")
@tags_option
@output_option
@pass_context
def entities_list(ctx: CliContext, tags: dict[str, str], output: str) -> None:
    """List the project's entities."""
    list_objects(ctx, lambda s: s.entities, _entity_row, tags, output, "entities")


@entities.command("describe")
@click.argument("name")
@output_option
@pass_context
def entities_describe(ctx: CliContext, name: str, output: str) -> None:
    """Show one entity's spec and current version."""
    describe_object(ctx, "entity", name, output)


# -- feature views ----------------------------------------------------------------------------
@click.group("feature-views")
def feature_views() -> None:
    """Browse feature views and their version history."""


def short_duration(value: timedelta) -> str:
    """``14d``, ``6h``, ``90s``; ``none`` for a zero ttl (no limit)."""
    seconds = int(value.total_seconds())
    if seconds == 0:
        return "none"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _view_row(v: FeatureView) -> dict[str, Any]:
    return {
        "name": v.name,
        "type": "stream" if isinstance(v, StreamFeatureView) else "batch",
        "entities": [e.name for e in v.entities],
        "features": len(v.features),
        "ttl": short_duration(v.ttl),
        "source": v.source.name or getattr(v.source, "path", ""),
        "tags": v.tags,
    }


@feature_views.command("list")
@tags_option
@output_option
@pass_context
def feature_views_list(ctx: CliContext, tags: dict[str, str], output: str) -> None:
    """List the project's feature views."""
    list_objects(ctx, lambda s: s.feature_views, _view_row, tags, output, "feature views")


@feature_views.command("describe")
@click.argument("name")
@output_option
@pass_context
def feature_views_describe(ctx: CliContext, name: str, output: str) -> None:
    """Show one feature view's spec, current version and watermark."""
    describe_object(ctx, "feature_view", name, output)


@feature_views.command("versions")
@click.argument("name")
@output_option
@pass_context
def feature_views_versions(ctx: CliContext, name: str, output: str) -> None:
    """List every stored version of a feature view (including deletions), oldest first."""
    with user_errors():
        history = ctx.store().history("feature_view", name)
        if not history:
            raise FeatureViewNotFoundError(name, ctx.store().project, detail="it has no recorded versions")
    if output == "json":
        rows = [
            {
                "version": h.version,
                "content_hash": h.content_hash,
                "applied_at": h.applied_at.isoformat(),
                "applied_by": h.applied_by,
                "spec": h.spec,
            }
            for h in history
        ]
        click.echo(json.dumps(rows, indent=2, default=str))
        return
    table = [
        {
            "version": h.version,
            "change": _change_label(history, i),
            "content hash": h.content_hash[:12],
            "applied at (UTC)": _time(h.applied_at),
            "applied by": h.applied_by,
        }
        for i, h in enumerate(history)
    ]
    emit(table, output, f"versions of feature view {name}")


def _change_label(history: Sequence[ObjectVersion], i: int) -> str:
    if history[i].spec is None:
        return "deleted"
    return "created" if i == 0 or history[i - 1].spec is None else "changed"


# -- feature services -------------------------------------------------------------------------
@click.group("feature-services")
def feature_services() -> None:
    """Browse feature services."""


def _service_row(s: FeatureService) -> dict[str, Any]:
    return {
        "name": s.name,
        "feature views": [f"{v}@v{s.pins[v]}" if v in s.pins else v for v in s.feature_view_names]
        or [f"{arm}: {target} ({weight:g})" for arm, (target, weight) in s.variants.items()],  # a split's arms
        "features": sum(len(p.features) for p in s.projections),
        "description": s.description,
        "tags": s.tags,
    }


@feature_services.command("list")
@tags_option
@output_option
@pass_context
def feature_services_list(ctx: CliContext, tags: dict[str, str], output: str) -> None:
    """List the project's feature services."""
    list_objects(ctx, lambda s: s.feature_services, _service_row, tags, output, "feature services")


@feature_services.command("describe")
@click.argument("name")
@output_option
@pass_context
def feature_services_describe(ctx: CliContext, name: str, output: str) -> None:
    """Show one feature service's spec and current version."""
    describe_object(ctx, "feature_service", name, output)


# -- data sources -----------------------------------------------------------------------------
@click.group("data-sources")
def data_sources() -> None:
    """Browse named data sources."""


def _source_row(s: DataSource) -> dict[str, Any]:
    where = s.path if isinstance(s, FileSource) else ""
    if isinstance(s, IcebergSource):
        where = f"{s.catalog}:{s.table}" if s.catalog else s.table
    elif isinstance(s, DorisSource):
        where = f"{s.database}.{s.table}" if s.database and s.table else s.table or "(query)"
    if isinstance(s, (PushSource, KafkaSource)):
        batch = s.batch_source.name or getattr(s.batch_source, "path", "")
        where = f"topic {s.topic} → {batch}" if isinstance(s, KafkaSource) else f"push → {batch}"
    return {
        "name": s.name,
        "type": s.type_name,
        "location": where,
        "timestamp field": s.timestamp_field,
        "tags": s.tags,
    }


@data_sources.command("list")
@tags_option
@output_option
@pass_context
def data_sources_list(ctx: CliContext, tags: dict[str, str], output: str) -> None:
    """List the project's named data sources."""
    list_objects(ctx, lambda s: s.data_sources, _source_row, tags, output, "data sources")


@data_sources.command("describe")
@click.argument("name")
@output_option
@pass_context
def data_sources_describe(ctx: CliContext, name: str, output: str) -> None:
    """Show one data source's spec and current version."""
    describe_object(ctx, "data_source", name, output)
