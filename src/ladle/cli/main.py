"""``ladle``: Feast's verbs, over Ladle's library."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from ladle.cli.commands import LazyGroup
from ladle.cli.context import CliContext


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--chdir",
    "-c",
    type=click.Path(file_okay=False, path_type=Path),
    default=".",
    help="Run as if started in this feature repo directory.",
)
@click.option(
    "--feature-store-yaml",
    "-f",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Use this feature_store.yaml instead of the one in the repo directory.",
)
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]),
    default="WARNING",
    show_default=True,
    help="Logging verbosity.",
)
@click.option(
    "--token",
    envvar="LADLE_AUTH_TOKEN",
    show_envvar=True,
    default=None,
    help="Credential to act with when auth is on (API key or bearer token); else the auth: section's.",
)
@click.pass_context
def cli(ctx: click.Context, chdir: Path, feature_store_yaml: Path | None, log_level: str, token: str | None) -> None:
    """Ladle: a real-time feature store that speaks Feast."""
    logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    ctx.obj = CliContext(chdir=chdir.resolve(), feature_store_yaml=feature_store_yaml, token=token)


def main() -> None:
    """Console-script entry point."""
    cli()
