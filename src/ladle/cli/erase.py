"""``ladle erase``: remove one entity's rows from the online store, the offline store and the feature logs."""

from __future__ import annotations

import click

from ladle.cli.context import CliContext, console, emit, output_option, pass_context, user_errors


@click.command("erase")
@click.option(
    "--entity",
    "-e",
    "entities",
    multiple=True,
    required=True,
    metavar="KEY=VALUE",
    help="The entity's join key (or entity name) and value; repeat for a composite entity.",
)
@click.option("--dry-run", is_flag=True, help="Count what would be removed; delete nothing.")
@output_option
@pass_context
def erase(ctx: CliContext, entities: tuple[str, ...], dry_run: bool, output: str) -> None:
    """Remove one entity's rows from every store and feature log, and report what was removed."""
    from ladle.monitor.erase import parse_entity_args

    with user_errors():
        store = ctx.store()
        report = store.erase_entity(parse_entity_args(entities), dry_run=dry_run)
        emit(report.rows(), output, "rows found (dry run)" if dry_run else "rows removed")
        if output != "json":
            verb = "would remove" if dry_run else "removed"
            keys = ", ".join(f"{k}={v!r}" for k, v in report.keys.items())
            console().print(f"{verb} {report.total} rows of {keys}", highlight=False)
