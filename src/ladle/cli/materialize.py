"""``ladle materialize`` and ``ladle materialize-incremental``."""

from __future__ import annotations

from typing import Any

import click

from ladle.cli.context import CliContext, emit, output_option, pass_context, user_errors
from ladle.materialize import ViewResult
from ladle.times import parse_time

views_option = click.option(
    "--views", "-v", "views", multiple=True, metavar="VIEW",
    help="Only this feature view (repeatable); default: every online view.",
)  # fmt: skip
progress_option = click.option(
    "--progress/--no-progress", default=True, show_default=True, help="Show a progress bar."
)


def _rows(results: list[ViewResult]) -> list[dict[str, Any]]:
    return [
        {
            "view": r.view,
            "start": r.start.isoformat(),
            "end": r.end.isoformat(),
            "rows_read": r.rows_read,
            "rows_written": r.rows_written,
            "skipped": r.skipped,
        }
        for r in results
    ]


@click.command("materialize")
@click.argument("start")
@click.argument("end")
@views_option
@progress_option
@output_option
@pass_context
def materialize_command(
    ctx: CliContext, start: str, end: str, views: tuple[str, ...], progress: bool, output: str
) -> None:
    """Load the newest row per entity with START <= event time <= END (ISO 8601; naive = UTC)."""
    with user_errors():
        results = ctx.store().materialize(parse_time(start), parse_time(end), list(views) or None, progress)
        emit(_rows(results), output, "materialized")


@click.command("materialize-incremental")
@click.argument("end")
@views_option
@progress_option
@output_option
@pass_context
def materialize_incremental_command(
    ctx: CliContext, end: str, views: tuple[str, ...], progress: bool, output: str
) -> None:
    """Materialize each view from its watermark (first run: END - ttl) up to END (ISO 8601)."""
    with user_errors():
        results = ctx.store().materialize_incremental(parse_time(end), list(views) or None, progress)
        emit(_rows(results), output, "materialized")


COMMANDS = [materialize_command, materialize_incremental_command]
