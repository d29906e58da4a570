"""``ladle get-online-features``: read the online store from the command line."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import click

from ladle.cli.context import CliContext, emit, output_option, pass_context, user_errors
from ladle.errors import EntityKeyError, InvalidFeatureReferenceError
from ladle.retrieval.online import entities_from_text
from ladle.retrieval.response import OnlineResponse
from ladle.types import FieldStatus

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def split_features(values: Sequence[str]) -> list[str]:
    """``-f a:x,a:y -f b`` → ``["a:x", "a:y", "b"]``."""
    refs = [part.strip() for value in values for part in value.split(",") if part.strip()]
    if not refs:
        raise InvalidFeatureReferenceError("no features given: pass -f view:feature (or a bare view name)")
    return refs


def split_entities(values: Sequence[str]) -> list[tuple[str, str]]:
    """``-e key=value`` pairs (a repeated key gives several rows)."""
    pairs = []
    for value in values:
        key, sep, text = value.partition("=")
        if not sep or not key.strip():
            raise EntityKeyError(f"entity {value!r} must be written join_key=value")
        pairs.append((key.strip(), text))
    return pairs


def response_rows(response: OnlineResponse) -> list[dict[str, Any]]:
    """One dict per entity row; a value that is not PRESENT shows its status instead of a value."""
    rows: list[dict[str, Any]] = [{} for _ in range(response.row_count)]
    for name, values, statuses in zip(response.feature_names, response.values, response.statuses, strict=True):
        for row, value, status in zip(rows, values, statuses, strict=True):
            row[name] = value if status == FieldStatus.PRESENT or value is not None else FieldStatus(status).name
    return rows


def response_json(response: OnlineResponse) -> str:
    """Feast's ``/get-online-features`` JSON shape (status names, RFC 3339 timestamps)."""

    def default(value: Any) -> Any:
        if isinstance(value, bytes):
            return base64.b64encode(value).decode()
        if isinstance(value, datetime):
            return int(value.timestamp())
        raise TypeError(type(value).__name__)

    def stamp(micros: int) -> str:
        return (_EPOCH + timedelta(microseconds=micros)).isoformat().replace("+00:00", "Z")

    results = [
        {
            "values": values,
            "statuses": [FieldStatus(s).name for s in statuses],
            "event_timestamps": [stamp(t) for t in stamps],
        }
        for values, statuses, stamps in zip(response.values, response.statuses, response.event_timestamps, strict=True)
    ]
    body = {"metadata": {"feature_names": response.feature_names}, "results": results}
    return json.dumps(body, indent=2, default=default)


@click.command("get-online-features")
@click.option(
    "--features",
    "-f",
    "features",
    multiple=True,
    required=True,
    metavar="VIEW:FEATURE,...",
    help="Feature references, comma-separated or repeated; a bare view name means all its features.",
)
@click.option(
    "--entity",
    "-e",
    "entities",
    multiple=True,
    required=True,
    metavar="KEY=VALUE",
    help="A join key value; repeat a key for several entity rows.",
)
@click.option("--full-feature-names", is_flag=True, help="Name columns view__feature.")
@output_option
@pass_context
def get_online_features(
    ctx: CliContext, features: tuple[str, ...], entities: tuple[str, ...], full_feature_names: bool, output: str
) -> None:
    """Print the latest feature values of some entities (ttl applied, like the server)."""
    with user_errors():
        store = ctx.store()
        refs = split_features(features)
        rows = entities_from_text(store.snapshot(), refs, split_entities(entities))
        response = store.get_online_features(refs, rows, full_feature_names=full_feature_names)
        if output == "json":
            click.echo(response_json(response))
        else:
            emit(response_rows(response), output, "online features")
