"""``ladle get-historical-features``: point-in-time-correct training data into a file."""

from __future__ import annotations

from pathlib import Path

import click

from ladle.cli.context import CliContext, console, pass_context, user_errors
from ladle.cli.progress import progress_option, steps, want_progress
from ladle.errors import RequestError
from ladle.times import parse_time


def _split(values: tuple[str, ...]) -> list[str]:
    return [ref.strip() for value in values for ref in value.split(",") if ref.strip()]


@click.command("get-historical-features")
@click.option(
    "--entities",
    "-d",
    "entities",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Entity frame: a Parquet (or .csv) file with the join keys and an event_timestamp column.",
)
@click.option(
    "--features",
    "-f",
    "features",
    multiple=True,
    metavar="VIEW:FEATURE,...",
    help="Feature references, comma-separated or repeated (a bare VIEW means all its features).",
)
@click.option("--feature-service", default=None, metavar="NAME", help="Read the features of this feature service.")
@click.option("--full-feature-names", is_flag=True, help="Name output columns 'view__feature'.")
@click.option(
    "--output",
    "-o",
    "output",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Result file: .parquet or .csv.",
)
@click.option(
    "--as-of",
    "as_of",
    default=None,
    metavar="TIME",
    help="Read the sources as they were at TIME (ISO 8601; naive = UTC): time travel, Iceberg offline store only.",
)
@progress_option
@pass_context
def get_historical_features(
    ctx: CliContext,
    entities: Path,
    features: tuple[str, ...],
    feature_service: str | None,
    full_feature_names: bool,
    output: Path,
    as_of: str | None,
    progress: bool | None,
) -> None:
    """Join features onto an entity frame as of each row's timestamp and write the result."""
    from ladle.retrieval.historical import write_result

    with user_errors():
        moment = parse_time(as_of, "--as-of") if as_of is not None else None
        refs = _split(features)
        if bool(refs) == bool(feature_service):
            raise RequestError("pass either --features or --feature-service (exactly one)")
        store = ctx.store()
        with steps(f"point-in-time join → {output.name}", None, want_progress(progress)):
            job = store.get_historical_features(
                entity_df=entities,
                features=refs or None,
                feature_service=feature_service,
                full_feature_names=full_feature_names,
                as_of=moment,
            )
            write_result(job, output)
    console().print(f"Wrote {output}", highlight=False)
