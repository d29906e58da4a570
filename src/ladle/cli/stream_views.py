"""``ladle stream-feature-views list | describe NAME`` (Feast's verb): browse stream feature views."""

from __future__ import annotations

import json
from typing import Any

import click
import yaml

from ladle.cli.context import CliContext, emit, output_option, pass_context, user_errors
from ladle.cli.objects import list_objects, short_duration, tags_option
from ladle.definitions import FeatureView, KafkaSource, StreamFeatureView
from ladle.definitions.stream_feature_view import window_label
from ladle.registry.base import RegistrySnapshot


@click.group("stream-feature-views")
def stream_feature_views() -> None:
    """Browse stream feature views: their topics, aggregations and transforms."""


def _topic(view: StreamFeatureView) -> str:
    source = view.source
    return source.topic if isinstance(source, KafkaSource) else f"push source {source.name}"


def _row(v: FeatureView) -> dict[str, Any]:
    assert isinstance(v, StreamFeatureView)  # list_objects is typed over the base kind
    return {
        "name": v.name,
        "entities": [e.name for e in v.entities],
        "topic": _topic(v),
        "aggregations": len(v.aggregations),
        "features": len(v.features),
        "ttl": short_duration(v.ttl),
        "tags": v.tags,
    }


def summary(view: StreamFeatureView) -> dict[str, Any]:
    """What ``describe`` shows beside the spec: topic, aggregations, transforms."""
    return {
        "source": view.source.name,
        "topic": _topic(view),
        "aggregations": [
            {
                "column": a.column,
                "function": a.function,
                "window": window_label(a.window),
                "slide": window_label(a.slide_interval) if a.slide_interval is not None else "",
                "name": a.name,
            }
            for a in view.aggregations
        ],
        "udf": view.udf.qualname if view.udf is not None else "",
        "derive": view.derive.qualname if view.derive is not None else "",
        "features": view.feature_names,
    }


def _streams(snapshot: RegistrySnapshot) -> dict[str, FeatureView]:
    return {n: v for n, v in snapshot.feature_views.items() if isinstance(v, StreamFeatureView)}


@stream_feature_views.command("list")
@tags_option
@output_option
@pass_context
def stream_feature_views_list(ctx: CliContext, tags: dict[str, str], output: str) -> None:
    """List the project's stream feature views."""
    list_objects(
        ctx,
        _streams,
        _row,
        tags,
        output,
        "stream feature views",
    )


@stream_feature_views.command("describe")
@click.argument("name")
@output_option
@pass_context
def stream_feature_views_describe(ctx: CliContext, name: str, output: str) -> None:
    """Show a stream feature view: topic, aggregations (column, function, window, slide, name), transforms."""
    with user_errors():
        store = ctx.store()
        view = store.get_stream_feature_view(name)
        history = store.registry.history("feature_view", name)
        watermark = store.registry.watermark(name)
    meta: dict[str, Any] = {"materialized_until": watermark.isoformat() if watermark else None}
    if history:
        last = history[-1]
        meta = {
            "version": last.version,
            "applied_at": last.applied_at.isoformat(),
            "applied_by": last.applied_by,
            **meta,
        }
    if output == "json":
        click.echo(json.dumps({"stream": summary(view), "spec": view.to_spec(), "meta": meta}, indent=2, default=str))
        return
    info = summary(view)
    aggregations = info.pop("aggregations")
    click.echo(yaml.safe_dump({"stream feature view": name, **info, **meta}, sort_keys=False).rstrip())
    if aggregations:
        emit(aggregations, output, "aggregations")
