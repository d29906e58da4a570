"""``ladle stream``: run the stream feature views (Kafka → online and offline stores) until SIGTERM."""

from __future__ import annotations

import click

from ladle.cli.context import CliContext, err_console, pass_context, user_errors


def _names(value: str | None) -> list[str]:
    return [n.strip() for n in (value or "").split(",") if n.strip()]


@click.command("stream")
@click.option("--views", default=None, metavar="A,B", help="Run only these stream feature views [default: all].")
@click.option("--group-id", default=None, help="Kafka consumer group [default: stream.group_id, else ladle-PROJECT].")
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Serve /metrics, /health and /ready on this port; 0 = off [default: stream.metrics_port, 8090].",
)
@pass_context
def stream(ctx: CliContext, views: str | None, group_id: str | None, metrics_port: int | None) -> None:
    """Run the stream feature views: Kafka → online and offline stores, until SIGTERM or Ctrl-C.

    Processes started with the same group id share the topics' partitions (scale out by starting
    more); SIGTERM finishes the micro-batch, writes files, commits offsets and exits 0.
    """
    from ladle.monitor.lineage_jobs import stream_run
    from ladle.streaming.process import StreamProcess

    with user_errors():
        store = ctx.store()
        process = StreamProcess.open(store, _names(views), group_id, metrics_port)
        port = process.start_metrics()
        plans = process.runner.plans
        topics = ", ".join(sorted({p.source.topic for p in plans}))
        names = ", ".join(v.name for p in plans for v in p.views)
        where = f"; metrics on :{port}" if port else ""
        err_console().print(
            f"ladle stream: {names} from {topics} (group {process.runner.settings.group_id}){where}",
            highlight=False,
            soft_wrap=True,
        )
        served = [v for p in plans for v in p.views]
        lineage = stream_run(store, served, process.runner.settings.group_id, process.runner.metrics.registry)
        with process.stopping_on_signals(), lineage:
            process.run()
