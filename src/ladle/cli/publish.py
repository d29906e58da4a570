"""``ladle publish``: SIMULATED raw ticks and weather observations onto the Kafka topics."""

from __future__ import annotations

import os

import click

from ladle.cli.context import CliContext, emit, err_console, output_option, pass_context, user_errors

DEFAULT_SEED = 2013  # the live feed's (ladle feed): equal seeds continue the series the same way
DEFAULT_SERVERS = "127.0.0.1:19092"  # the demo's local broker (python -m ladle.streaming.devbroker)
SERVERS_ENV = "LADLE_KAFKA_BOOTSTRAP_SERVERS"


@click.command()
@click.option(
    "--bootstrap-servers",
    default=lambda: os.environ.get(SERVERS_ENV, DEFAULT_SERVERS),
    show_default=f"${SERVERS_ENV} or {DEFAULT_SERVERS}",
    help="Kafka bootstrap servers.",
)
@click.option("--ticks-topic", default="commodity-ticks", show_default=True, help="Topic of the price ticks.")
@click.option(
    "--weather-topic", default="weather-observations", show_default=True, help="Topic of the weather observations."
)
@click.option(
    "--partitions", type=click.IntRange(min=1), default=3, show_default=True, help="Partitions of topics it creates."
)
@click.option(
    "--interval", type=click.FloatRange(min=0.01), default=1.0, show_default=True, help="Seconds between ticks."
)
@click.option(
    "--weather-interval",
    type=click.FloatRange(min=0.01),
    default=10.0,
    show_default=True,
    help="Seconds between observations of a station.",
)
@click.option("--duration", type=click.FloatRange(min=0.0), help="Stop after this many seconds (default: Ctrl-C).")
@click.option("--count", type=click.IntRange(min=1), help="Stop after this many ticks per commodity.")
@click.option("--no-weather", is_flag=True, help="Publish price ticks only.")
@click.option("--seed", type=int, default=DEFAULT_SEED, show_default=True, help="Random seed of the simulation.")
@output_option
@pass_context
def publish(
    ctx: CliContext,
    bootstrap_servers: str,
    ticks_topic: str,
    weather_topic: str,
    partitions: int,
    interval: float,
    weather_interval: float,
    duration: float | None,
    count: int | None,
    no_weather: bool,
    seed: int,
    output: str,
) -> None:
    """Publish SIMULATED price ticks and weather observations to Kafka, at the wall-clock time.

    Every commodity gets a tick each --interval seconds, its price continuing the real series as
    the live feed does; every station an observation each --weather-interval seconds. Each message
    has "simulated": true. Topics that do not exist are created. Runs until Ctrl-C, --duration
    or --count. The real data come from the repo's data_dir (as for ladle ingest).
    """
    from ladle.datasets import load_committed_extracts
    from ladle.ingest.data_dir import RepoDataDir
    from ladle.streaming.publish import Publisher, PublishResult, PublishSettings, default_models
    from ladle.streaming.publish import publish as run

    with user_errors():
        settings = PublishSettings(
            bootstrap_servers,
            ticks_topic=ticks_topic,
            weather_topic=weather_topic,
            partitions=partitions,
            interval=interval,
            weather_interval=weather_interval,
            duration=duration,
            count=count,
        )
        extracts = load_committed_extracts(RepoDataDir(ctx.chdir).resolve())
        publisher = Publisher.build(
            default_models(extracts["wti_daily"]), None if no_weather else extracts["nyc_weather"], seed
        )
        seen = PublishResult()

        def progress(result: PublishResult) -> None:
            nonlocal seen
            seen = result

        err_console().print(
            f"publishing SIMULATED ticks of {', '.join(publisher.commodities)}"
            + (f" and weather at {', '.join(publisher.stations)}" if publisher.stations else "")
            + f" to {bootstrap_servers}"
        )
        try:
            seen = run(publisher, settings, on_round=progress)
        except KeyboardInterrupt:
            err_console().print("stopped")
        row = {
            "ticks": seen.ticks,
            "observations": seen.observations,
            "first_event": seen.first_event,
            "last_event": seen.last_event,
            "simulated": True,
        }
        emit([row], output, f"published (simulated) to {bootstrap_servers}")
