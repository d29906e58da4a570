"""``ladle ingest``: run the repo's ingestions (raw data → feature rows → offline store)."""

from __future__ import annotations

from datetime import datetime

import click

from ladle.cli.context import CliContext, emit, output_option, pass_context, user_errors
from ladle.cli.progress import progress_option, steps, want_progress
from ladle.errors import FeatureViewNotFoundError, RequestError
from ladle.times import parse_time


def _window(start: datetime, end: datetime) -> str:
    if start.year <= 1900 and end.year >= 2200:
        return "all (replaces every earlier row of the ingestion)"
    return f"{start.isoformat()} → {end.isoformat()}"


@click.command()
@click.argument("names", nargs=-1)
@click.option("--start", help="Only rewrite rows with event time at or after this (ISO 8601; naive = UTC).")
@click.option("--end", help="Only rewrite rows with event time before this (ISO 8601; naive = UTC).")
@click.option("--list", "list_only", is_flag=True, help="List the repo's ingestions and exit.")
@progress_option
@output_option
@pass_context
def ingest(
    ctx: CliContext,
    names: tuple[str, ...],
    start: str | None,
    end: str | None,
    list_only: bool,
    progress: bool | None,
    output: str,
) -> None:
    """Compute feature rows from raw data and store them offline (idempotent).

    Runs every ingestion declared in the repo, or only NAMES. Re-running a window replaces that
    window's rows, so nothing is duplicated.
    """
    from ladle.ingest import run_ingestion
    from ladle.ingest.collect import collect_ingestions, select
    from ladle.monitor.lineage_jobs import ingest_run
    from ladle.repo.loader import load_repo

    with user_errors():
        lo = parse_time(start, "--start") if start is not None else None
        hi = parse_time(end, "--end") if end is not None else None
        if lo is not None and hi is not None and lo >= hi:
            raise RequestError(f"--start {start} is not before --end {end}")
        jobs = select(collect_ingestions(ctx.chdir), list(names))
        if list_only:
            rows = [
                {"name": j.name, "feature_view": j.feature_view, "partition": j.partition, "description": j.description}
                for j in jobs
            ]
            emit(rows, output, "ingestions")
            return
        store = ctx.store()
        config = store.config
        # Views come from the repo's files, not the registry: ingest may run before the first apply.
        views = {v.name: v for v in load_repo(ctx.chdir).feature_views}
        results = []
        with steps("ingest", len(jobs), want_progress(progress)) as bar:
            for job in jobs:
                if job.feature_view not in views:
                    raise FeatureViewNotFoundError(job.feature_view, detail=f"ingestion '{job.name}' feeds it")
                bar.begin(f"ingest {job.name}")
                with ingest_run(store, job.name, views[job.feature_view]) as run:
                    result = run_ingestion(config, job, views[job.feature_view], lo, hi, store.offline_store)
                    run.written(result.rows)
                bar.done()
                results.append(
                    {
                        "name": result.name,
                        "feature_view": result.feature_view,
                        "rows": result.rows,
                        "start": result.start.isoformat(),
                        "end": result.end.isoformat(),
                    }
                )
        emit(results, output, "ingested")
