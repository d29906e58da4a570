"""``ladle materialize`` and ``ladle materialize-incremental``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from ladle.cli.context import CliContext, emit, err_console, output_option, pass_context, user_errors
from ladle.cli.progress import progress_option, want_progress

if TYPE_CHECKING:
    from ladle.materialize import ViewResult

views_option = click.option(
    "--views", "-v", "views", multiple=True, metavar="VIEW",
    help="Only this feature view (repeatable); default: every online view.",
)  # fmt: skip


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


def _report(results: list[ViewResult], output: str) -> None:
    if output == "json":
        emit(_rows(results), output)
        return
    for r in results:
        if r.skipped:
            # For a skipped view, start is its watermark: say so instead of printing a window with start > end.
            err_console().print(
                f"{r.view}: up to date: watermark {r.start.isoformat()} is not before end {r.end.isoformat()}; "
                "nothing to materialize",
                highlight=False,
                soft_wrap=True,
            )
    done = [r for r in results if not r.skipped]
    if done or not results:
        emit(_rows(done), output, "materialized")


@click.command("materialize")
@click.argument("start")
@click.argument("end")
@views_option
@progress_option
@output_option
@pass_context
def materialize_command(
    ctx: CliContext, start: str, end: str, views: tuple[str, ...], progress: bool | None, output: str
) -> None:
    """Load the newest row per entity with START <= event time <= END (ISO 8601; naive = UTC)."""
    from ladle.times import parse_time

    with user_errors():
        store = ctx.store()
        results = store.materialize(parse_time(start), parse_time(end), list(views) or None, want_progress(progress))
        _report(results, output)


@click.command("materialize-incremental")
@click.argument("end")
@views_option
@progress_option
@output_option
@pass_context
def materialize_incremental_command(
    ctx: CliContext, end: str, views: tuple[str, ...], progress: bool | None, output: str
) -> None:
    """Materialize each view from its watermark (first run: END - ttl) up to END (ISO 8601)."""
    from ladle.times import parse_time

    with user_errors():
        results = ctx.store().materialize_incremental(parse_time(end), list(views) or None, want_progress(progress))
        _report(results, output)
