"""``ladle schedule``: run the repo's materialization schedules (``--once NAME``, ``--list``)."""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from types import FrameType
from typing import Any

import click

from ladle.cli.context import CliContext, emit, err_console, output_option, pass_context, user_errors
from ladle.errors import RepoError
from ladle.schedule import FireResult, Scheduler, ScheduleStatus, collect_schedules, find_schedule


@click.command("schedule")
@click.option("--once", metavar="NAME", default=None, help="Run schedule NAME now (window ending now) and exit.")
@click.option("--list", "list_", is_flag=True, help="Show each schedule's next run and last result, and exit.")
@click.option(
    "--metrics-port",
    type=click.IntRange(1, 65535),
    default=None,
    help="Serve Prometheus metrics on this port while running (Feast uses 8000).",
)
@output_option
@pass_context
def schedule(ctx: CliContext, once: str | None, list_: bool, metrics_port: int | None, output: str) -> None:
    """Run the schedules declared in the feature repo until SIGTERM or Ctrl-C.

    Several schedulers may run against one registry: each fire runs once, in whichever holds the
    schedule's lease. Fires missed while no scheduler ran are caught up on start.
    """
    if once is not None and list_:
        raise click.UsageError("use either --once NAME or --list, not both")
    with user_errors():
        schedules = collect_schedules(ctx.chdir)
        if once is not None:
            find_schedule(schedules, once)  # a typo fails before any connection is made
        store = ctx.store()
        scheduler = Scheduler(store, schedules, on_result=_printer(output))
        try:
            if list_:
                emit([_status_row(s, output) for s in scheduler.status()], output, "schedules")
            elif once is not None:
                _run_once(scheduler, once, output)
            else:
                if not schedules:
                    raise RepoError(
                        f"no schedules are declared in {store.repo_path}; add Schedule(...) objects next to "
                        "your feature views (see docs/schedule.md)"
                    )
                _run_forever(scheduler, metrics_port)
        finally:
            scheduler.close()


def _run_once(scheduler: Scheduler, name: str, output: str) -> None:
    target = scheduler.schedule(name)
    scheduler.check_views([target])
    scheduler.on_result = None  # printed below as the command's result
    result = scheduler.run_once(name)
    if output == "json":
        emit([result.to_dict()], output)
    else:
        _printer(output)(result)
    if not result.ok:
        raise SystemExit(1)


def _run_forever(scheduler: Scheduler, metrics_port: int | None) -> None:
    scheduler.check_views()
    if metrics_port is not None:
        from prometheus_client import REGISTRY, start_http_server

        from ladle.monitor.report_metrics import watch_reports

        store = scheduler.store
        watch_reports(REGISTRY, store.config.registry, store.project, store.repo_path)  # monitor schedules' results
        start_http_server(metrics_port)
    stop = threading.Event()
    with _stop_on_signals(stop):
        upcoming = ", ".join(f"{s.schedule.name} at {s.next_run.isoformat()}" for s in scheduler.status())
        err_console().print(
            f"ladle schedule: {len(scheduler.schedules)} schedule(s), owner {scheduler.owner}; next: {upcoming}. "
            "Stop with Ctrl-C or SIGTERM.",
            highlight=False,
            soft_wrap=True,
        )
        scheduler.run(stop)
    err_console().print("ladle schedule: stopped", highlight=False)


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGTERM/SIGINT ask the loop to stop after the current run; a second signal acts as usual."""
    defaults: dict[signal.Signals, Callable[[int, FrameType | None], Any] | signal.Handlers] = {
        signal.SIGTERM: signal.SIG_DFL,
        signal.SIGINT: signal.default_int_handler,
    }
    previous = {sig: signal.getsignal(sig) for sig in defaults}

    def handle(signum: int, _frame: FrameType | None) -> None:
        stop.set()
        err_console().print("ladle schedule: stopping after the current run (signal again to abort)", highlight=False)
        signal.signal(signum, defaults[signal.Signals(signum)])

    for sig in defaults:
        signal.signal(sig, handle)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _printer(output: str) -> Callable[[FireResult], None]:
    def print_result(result: FireResult) -> None:
        if output == "json":
            click.echo(json.dumps(result.to_dict()))
            return
        line = (
            f"{result.schedule} {result.trigger} fire {result.scheduled_for.isoformat()}: {result.status} "
            f"in {result.duration_seconds:.3f} s (window {result.window_start.isoformat()} .. "
            f"{result.window_end.isoformat()})"
        )
        click.echo(line + (f": {result.detail}" if result.detail else ""))

    return print_result


def _status_row(status: ScheduleStatus, output: str) -> dict[str, Any]:
    if output == "json":
        return status.to_dict()
    last = status.last_run
    if last is None:
        outcome = "never run"
    else:
        took = f" in {last.duration_seconds:.1f} s" if last.duration_seconds is not None else ""
        outcome = f"{last.status} {last.scheduled_for:%Y-%m-%d %H:%M}{took}"
    failures = status.state.failures if status.state else 0
    return {
        "name": status.schedule.name,
        "cron": f"{status.schedule.cron.expression} {status.schedule.timezone}",
        "views": list(status.schedule.feature_views),
        "lookback": _span(status.schedule.lookback),
        "next run (UTC)": f"{status.next_run:%Y-%m-%d %H:%M}",
        "last run": outcome + (f" ({failures} failed in a row)" if failures else ""),
    }


def _span(delta: timedelta) -> str:
    """``7d``, ``2h``, ``1h30m``: compact enough for a table column."""
    seconds = int(delta.total_seconds())
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"
