"""``ladle import-feast LOCATION``: copy a Feast registry's objects into this repo's Ladle registry."""

from __future__ import annotations

import json

import click

from ladle.cli.context import CliContext, emit, output_option, pass_context, user_errors


@click.command("import-feast")
@click.argument("location")
@click.option("--project", default=None, help="The Feast project to import (needed when the registry holds several).")
@click.option("--dry-run", is_flag=True, help="Map and validate everything, show what would change, write nothing.")
@click.option(
    "--skip-source-validation",
    is_flag=True,
    help="Do not open the sources' files to check their columns (e.g. paths of another machine).",
)
@click.option(
    "--paths-relative-to",
    type=click.Path(file_okay=False, exists=True),
    default=None,
    help="The Feast repo's directory: relative source paths become absolute against it (else against this repo).",
)
@output_option
@pass_context
def import_feast_command(
    ctx: CliContext,
    location: str,
    project: str | None,
    dry_run: bool,
    skip_source_validation: bool,
    paths_relative_to: str | None,
    output: str,
) -> None:
    """Import a Feast registry (a registry.db protobuf file, or a SQL registry URL) into Ladle's registry.

    Everything is written in one registry transaction, or nothing is; what cannot be mapped is
    listed with the reason.
    """
    from ladle.feast_import import import_feast

    with user_errors():
        report = import_feast(
            ctx.store(),
            location,
            project,
            dry_run=dry_run,
            skip_source_validation=skip_source_validation,
            paths_relative_to=paths_relative_to,
        )
    if output == "json":
        click.echo(json.dumps(report.to_dict(), indent=2, default=str))
        return
    verb = "would import" if dry_run else "imported"
    rows = [{"kind": k, "name": n, "status": verb} for k, n in report.imported]
    rows += [{"kind": s.kind, "name": s.name, "status": f"NOT IMPORTED: {s.reason}"} for s in report.skipped]
    rows += [{"kind": s.kind, "name": s.name, "status": f"note: {s.reason}"} for s in report.notes]
    emit(rows, "table", f"Feast project '{report.feast_project}'")
    if report.result is not None:
        changes = len(report.result.diffs)
        datasets = f" (+ {len(report.datasets)} saved dataset record(s), same transaction)" if report.datasets else ""
        done = "planned" if dry_run else "applied"
        click.echo(f"{changes} registry change(s) {done}{datasets}; {len(report.skipped)} skipped")
