"""``ladle monitor``: drift baselines and reports, the online/offline skew audit, freshness SLOs, report history.

Checks exit 0 when every feature or view is within its thresholds, 2 when one is past them (so a CI
job or a cron can alert on the status), 1 on an error. Each run is stored as a report unless
``--no-record``; ``ladle monitor reports`` shows the history. See docs/monitoring.md.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from ladle.cli.context import CliContext, console, emit, output_option, pass_context, user_errors
from ladle.errors import RequestError
from ladle.times import parse_time

BREACH_EXIT = 2


def _split(values: tuple[str, ...]) -> list[str]:
    return [ref.strip() for value in values for ref in value.split(",") if ref.strip()]


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


@click.group("monitor")
def monitor() -> None:
    """Drift, online/offline skew and freshness checks (exit 2 past a threshold)."""


@monitor.command("baseline")
@click.option("--name", required=True, help="Name to save the baseline under (saving again replaces it).")
@click.option("--feature-service", default=None, metavar="NAME", help="Profile the features of this service.")
@click.option("--features", "-f", multiple=True, metavar="VIEW:FEATURE,...", help="... or these references.")
@click.option(
    "--entity-df",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Entity frame of the training set (Parquet or CSV with join keys and event_timestamp).",
)
@click.option(
    "--bins", default=10, show_default=True, type=click.IntRange(2, 1000), help="Quantile bins per numeric feature."
)
@click.option(
    "--top-k",
    default=20,
    show_default=True,
    type=click.IntRange(1, 1000),
    help="Categories kept per categorical feature.",
)
@output_option
@pass_context
def baseline(
    ctx: CliContext,
    name: str,
    feature_service: str | None,
    features: tuple[str, ...],
    entity_df: Path,
    bins: int,
    top_k: int,
    output: str,
) -> None:
    """Take a training set (point-in-time join of ENTITY_DF) and save its distributions as a drift baseline."""
    refs = _split(features)
    if bool(refs) == bool(feature_service):
        raise click.UsageError("pass either --feature-service NAME or --features VIEW:FEATURE,...")
    with user_errors():
        store = ctx.store()
        selected: str | list[str] = feature_service if feature_service else refs
        job = store.get_historical_features(
            str(entity_df), features=refs or None, feature_service=feature_service, full_feature_names=True
        )
        saved = store.save_drift_baseline(job, name, selected, bins=bins, top_k=top_k)
        rows = [
            {
                "feature": ref,
                "type": p.type,
                "values": p.count,
                "null_rate": _fmt(p.null_rate),
                "range": "-" if p.range is None else f"{_fmt(p.range[0])} .. {_fmt(p.range[1])}",
                "bins": len(p.counts),
            }
            for ref, p in saved.features.items()
        ]
        emit(rows, output, f"baseline '{name}' ({saved.rows} rows)")


@monitor.command("baselines")
@output_option
@pass_context
def baselines(ctx: CliContext, output: str) -> None:
    """List the saved drift baselines."""
    from ladle.monitor.baseline_store import BaselineStore

    with user_errors():
        store = ctx.store()
        saved = BaselineStore.open(store.config.registry, store.project, store.repo_path)
        try:
            emit(saved.summaries(), output, "baselines")
        finally:
            saved.close()


@monitor.command("drift")
@click.option("--baseline", "baseline_name", required=True, metavar="NAME", help="The baseline to compare with.")
@click.option(
    "--start", default=None, metavar="TIME", help="Window start (ISO 8601; naive = UTC); default END - --last."
)
@click.option("--end", default=None, metavar="TIME", help="Window end (ISO 8601); default now.")
@click.option(
    "--last",
    default="1d",
    show_default=True,
    metavar="DURATION",
    help="Window length when --start is not given (90m, 6h, 7d).",
)
@click.option(
    "--source",
    type=click.Choice(["materialized", "served"]),
    default="materialized",
    show_default=True,
    help="Offline rows of the baseline's views, or the feature log of --feature-service.",
)
@click.option("--feature-service", default=None, metavar="NAME", help="Whose feature log to read (--source served).")
@click.option("--variant", default=None, metavar="ARM", help="Only the rows one A/B arm served (--source served).")
@click.option("--no-record", is_flag=True, help="Do not store the report.")
@output_option
@pass_context
def drift(
    ctx: CliContext,
    baseline_name: str,
    start: str | None,
    end: str | None,
    last: str,
    source: str,
    feature_service: str | None,
    variant: str | None,
    no_record: bool,
    output: str,
) -> None:
    """Compare a window of values with a baseline: PSI, KS, chi-square, null rate, range (exit 2 on drift)."""
    from ladle.monitor.drift_run import run_drift

    with user_errors():
        window = _window(start, end, last)
        results = run_drift(
            ctx.store(), baseline_name, *window, source=source,  # type: ignore[arg-type]
            feature_service=feature_service, record=not no_record, variant=variant,
        )  # fmt: skip
        if output == "json":
            click.echo(json.dumps([{"subject": r.subject, "status": r.status, **r.payload} for r in results], indent=2))
        else:
            for r in results:
                _drift_table(r.subject, r.status, r.payload)
    if any(not r.ok for r in results):
        raise SystemExit(BREACH_EXIT)


def _window(start: str | None, end: str | None, last: str) -> tuple[datetime, datetime]:
    from ladle.monitor.freshness import parse_duration

    stop = parse_time(end, "--end") if end else datetime.now(UTC)
    begin = parse_time(start, "--start") if start else stop - parse_duration(last)
    if begin >= stop:
        raise RequestError(f"the window is empty: --start {begin.isoformat()} is not before --end {stop.isoformat()}")
    return begin, stop


def _drift_table(subject: str, status: str, payload: dict[str, Any]) -> None:
    from rich.table import Table

    window = payload["window"]
    title = (
        f"drift of {subject} vs baseline '{payload['baseline']}' "
        f"({payload['source']}, {window['start']} .. {window['end']}): {status}"
    )
    table = Table(title=title)
    for column in ("feature", "type", "n", "psi", "ks", "chi2 p", "null rate", "out of range", "breach"):
        table.add_column(column, no_wrap=column == "feature")
    for ref, e in payload["features"].items():
        nulls = e["null_rate"]
        verdict = ", ".join(e["breaches"]) if e["breach"] else ("ok" if e["judged"] else "too few rows")
        table.add_row(
            ref, e["type"], str(e["count"]["current"]), _fmt(e["psi"]), _fmt(e["ks"]), _fmt(e["chi2_p"]),
            f"{_fmt(nulls['baseline'])} -> {_fmt(nulls['current'])}", _fmt(e["out_of_range"]),
            f"[bold red]{verdict}[/]" if e["breach"] else verdict,
        )  # fmt: skip
    console().print(table)


@monitor.command("skew")
@click.argument("target")
@click.option(
    "--sample", type=click.IntRange(1), default=None, help="Entities to sample (default: monitoring.skew_sample)."
)
@click.option("--seed", type=int, default=None, help="Sampling seed, to repeat an audit (default: random, reported).")
@click.option("--no-record", is_flag=True, help="Do not store the report.")
@output_option
@pass_context
def skew(ctx: CliContext, target: str, sample: int | None, seed: int | None, no_record: bool, output: str) -> None:
    """Audit TARGET (a feature view or service): online values vs point-in-time offline at the read time."""
    from ladle.monitor.skew import audit_skew

    with user_errors():
        result = audit_skew(ctx.store(), target, sample, seed, record=not no_record)
        if output == "json":
            click.echo(json.dumps({"subject": result.subject, "status": result.status, **result.payload}, indent=2))
        else:
            rows = [{"feature": ref, **f} for ref, f in result.payload["features"].items()]
            sampled, seed_used = result.payload["sampled"], result.payload["seed"]
            title = f"skew of {target}: {sampled} entities sampled (seed {seed_used}): {result.status}"
            emit(rows, output, title)
            if result.payload["examples"]:
                emit(
                    [
                        {"feature": f"{m['view']}:{m['feature']}", "entity": m["entity"], "online": m["online"],
                         "status": m["online_status"], "offline": m["offline"]}
                        for m in result.payload["examples"]
                    ],
                    output,
                    "examples",
                )  # fmt: skip
    if not result.ok:
        raise SystemExit(BREACH_EXIT)


@monitor.command("freshness")
@click.argument("views", nargs=-1)
@click.option("--no-record", is_flag=True, help="Do not store the reports.")
@output_option
@pass_context
def freshness(ctx: CliContext, views: tuple[str, ...], no_record: bool, output: str) -> None:
    """Age of the newest event of each view (default: all) against its freshness SLO (exit 2 on breach)."""
    from ladle.monitor.freshness import check_freshness

    with user_errors():
        results = check_freshness(ctx.store(), list(views) or None, record=not no_record)
        rows = [{"view": r.view, **r.to_payload()} for r in results]
        if output == "table":
            rows = [
                {
                    "view": r["view"], "newest event": r["newest_event"], "age": _duration(r["age_seconds"]),
                    "slo": _duration(r["slo_seconds"]), "judged on": r["judged_on"],
                    "breach": "BREACH" if r["breach"] else ("ok" if r["slo_seconds"] else "no SLO"),
                }
                for r in rows
            ]  # fmt: skip
        emit(rows, output, "freshness")
    if any(r.breach for r in results):
        raise SystemExit(BREACH_EXIT)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


@monitor.command("reports")
@click.argument("kind", required=False, type=click.Choice(["drift", "skew", "freshness"]))
@click.option("--subject", default=None, help="Only reports about this view or feature service.")
@click.option("--limit", type=click.IntRange(1), default=20, show_default=True, help="Newest reports to show.")
@output_option
@pass_context
def reports(ctx: CliContext, kind: str | None, subject: str | None, limit: int, output: str) -> None:
    """Stored monitoring reports, newest first (the full payloads with -o json)."""
    from ladle.registry.reports import ReportJournal

    with user_errors():
        store = ctx.store()
        journal = ReportJournal.open(store.config.registry, store.project, store.repo_path)
        try:
            found = journal.reports(kind, subject, limit=limit)
        finally:
            journal.close()
        if output == "json":
            click.echo(json.dumps([r.to_dict() for r in found], indent=2, default=str))
            return
        emit([_report_row(r.to_dict()) for r in found], output, "reports")


def _report_row(report: dict[str, Any]) -> dict[str, Any]:
    payload = report["payload"]
    flagged: Sequence[str]
    if report["kind"] == "freshness":
        flagged = [v for v, e in payload.get("views", {}).items() if e.get("breach")]
    elif report["kind"] == "drift":
        flagged = [f for f, e in payload.get("features", {}).items() if e.get("breach")]
    else:
        flagged = [f for f, e in payload.get("features", {}).items() if e.get("mismatches")]
    return {
        "id": report["report_id"],
        "kind": report["kind"],
        "subject": report["subject"],
        "status": report["status"],
        "created_at": report["created_at"],
        "flagged": list(flagged),
    }
