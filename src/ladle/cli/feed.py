"""``ladle feed``: run the repo's live feeds (SIMULATED fresh rows → push sources)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import click

from ladle.cli.context import CliContext, emit, err_console, output_option, pass_context, user_errors
from ladle.errors import RequestError
from ladle.ingest.feed import LiveFeed, run_feed
from ladle.retrieval.push import PushMode
from ladle.store import FeatureStore
from ladle.times import parse_time

DEFAULT_SEED = 2013


@click.command()
@click.argument("names", nargs=-1)
@click.option("--seed", type=int, default=DEFAULT_SEED, show_default=True, help="Random seed of the simulation.")
@click.option("--now", "now_text", help="Pretend it is this time (ISO 8601; naive = UTC); default: the clock.")
@click.option(
    "--to",
    "to",
    type=click.Choice(["online", "online_and_offline"]),
    default="online",
    show_default=True,
    help="Where the pushed rows go; online keeps the offline store real history only.",
)
@click.option("--follow", is_flag=True, help="Keep feeding every --interval seconds until Ctrl-C.")
@click.option(
    "--interval",
    type=click.FloatRange(min=1.0),
    default=60.0,
    show_default=True,
    help="Seconds between runs with --follow.",
)
@click.option("--list", "list_only", is_flag=True, help="List the repo's live feeds and exit.")
@output_option
@pass_context
def feed(
    ctx: CliContext,
    names: tuple[str, ...],
    seed: int,
    now_text: str | None,
    to: str,
    follow: bool,
    interval: float,
    list_only: bool,
    output: str,
) -> None:
    """Push SIMULATED fresh rows that continue each real series up to now.

    Runs every live feed declared in the repo, or only NAMES: catches up over each feed's
    catch-up span, then with --follow pushes what is new every --interval seconds. Equal
    --seed and --now push equal rows. Every row has the feature `simulated` = true.
    """
    from ladle.ingest.feed import collect_feeds, select_feeds

    with user_errors():
        start = parse_time(now_text, "--now") if now_text is not None else datetime.now(UTC)
        if follow and now_text is not None:
            raise RequestError("--follow runs on the clock: leave out --now")
        feeds = select_feeds(collect_feeds(ctx.chdir), list(names))
        if list_only:
            rows = [
                {
                    "name": f.name,
                    "push_source": f.push_source,
                    "warmup": _span(f.warmup),
                    "catch_up": _span(f.catch_up),
                    "description": f.description,
                }
                for f in feeds
            ]
            emit(rows, output, "live feeds")
            return
        store = ctx.store()
        mode: PushMode = "online_and_offline" if to == "online_and_offline" else "online"
        try:
            _loop(store, feeds, start, seed, mode, interval if follow else None, output)
        except KeyboardInterrupt:
            err_console().print("stopped")


def _loop(
    store: FeatureStore,
    feeds: list[LiveFeed],
    start: datetime,
    seed: int,
    mode: PushMode,
    interval: float | None,
    output: str,
) -> None:
    origins = {f.name: start - f.warmup - f.catch_up for f in feeds}
    since = {f.name: start - f.catch_up for f in feeds}
    now = start
    while True:
        results: list[dict[str, Any]] = []
        for f in feeds:
            result = run_feed(store, f, origins[f.name], since[f.name], now, seed, to=mode)
            since[f.name] = now
            results.append(
                {
                    "name": result.name,
                    "push_source": result.push_source,
                    "rows": result.rows,
                    "newest": result.newest.isoformat() if result.newest else "",
                    "simulated": True,
                }
            )
        emit(results, output, f"fed (simulated) up to {now.isoformat(timespec='seconds')}")
        if interval is None:
            return
        time.sleep(interval)
        now = datetime.now(UTC)


def _span(span: timedelta) -> str:
    days, rest = divmod(span, timedelta(days=1))
    return f"{days} d" if not rest else f"{span.total_seconds() / 3600:g} h"
