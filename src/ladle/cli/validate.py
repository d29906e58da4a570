"""``ladle validate``: a saved dataset (or a Parquet file) against a validation reference."""

from __future__ import annotations

import json
import sys

import click

from ladle.cli.context import CliContext, console, output_option, pass_context, user_errors
from ladle.errors import RequestError


@click.command("validate")
@click.option("--reference", "-r", required=True, metavar="NAME", help="The validation reference to judge by.")
@click.option("--dataset", "-d", default=None, metavar="NAME", help="A saved dataset to check.")
@click.argument("file", required=False, type=click.Path(dir_okay=False))
@output_option
@pass_context
def validate(ctx: CliContext, reference: str, dataset: str | None, file: str | None, output: str) -> None:
    """Check a saved dataset or a Parquet file against a validation reference.

    Prints the report; exits 1 when a check fails (and on errors, with one line).
    """
    from ladle.retrieval.saved import read_saved_dataset

    with user_errors():
        if (dataset is None) == (file is None):
            raise RequestError("give a saved dataset (--dataset NAME) or a Parquet FILE, one of the two")
        store = ctx.store()
        if dataset is not None:
            frame = read_saved_dataset(store.repo_path, store.get_saved_dataset(dataset))
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            try:
                frame = pq.read_table(file).to_pandas()
            except (OSError, pa.ArrowInvalid) as exc:
                raise RequestError(f"cannot read {file}: {exc}") from None
        report = store.validate(frame, reference)
    if output == "json":
        click.echo(json.dumps(report.to_dict(), indent=2, default=str))
    elif report.ok:
        console().print(str(report), highlight=False)
    else:
        console().print(str(report).split(": ", 1)[0] + ":", highlight=False)
        for finding in report.findings:
            console().print(f"  {finding}", highlight=False, soft_wrap=True)
    if not report.ok:
        sys.exit(1)
