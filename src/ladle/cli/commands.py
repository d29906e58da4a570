"""The list of command modules; a module exports ``COMMANDS``."""

from __future__ import annotations

import importlib

import click

_MODULES = [
    "ladle.cli.version",
    "ladle.cli.repo",
    "ladle.cli.objects",
    "ladle.cli.schedule",
    "ladle.cli.serve",
    "ladle.cli.ingest",
    "ladle.cli.feed",
    "ladle.cli.online",
    "ladle.cli.materialize",
    "ladle.cli.historical",
]


def all_commands() -> list[click.Command]:
    """Every top-level command or group, from every command module."""
    out: list[click.Command] = []
    for name in _MODULES:
        out.extend(importlib.import_module(name).COMMANDS)
    return out
