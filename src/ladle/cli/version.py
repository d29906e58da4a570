"""``ladle version``."""

from __future__ import annotations

import click

import ladle


@click.command()
def version() -> None:
    """Print Ladle's version."""
    click.echo(f"Ladle SDK version {ladle.__version__}")
