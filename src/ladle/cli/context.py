"""Shared CLI plumbing: the global options, the store, output formats and error handling."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from ladle.errors import LadleError

if TYPE_CHECKING:
    from rich.console import Console

    from ladle.store import FeatureStore

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class CliContext:
    """Options shared by every command (``--chdir``, ``--feature-store-yaml``, ``--token``)."""

    chdir: Path
    feature_store_yaml: Path | None
    token: str | None = field(default=None, repr=False)
    _store: FeatureStore | None = field(default=None, repr=False)

    def store(self) -> FeatureStore:
        """The feature store of the repo the CLI was pointed at."""
        from ladle.store import FeatureStore

        if self._store is None:
            self._store = FeatureStore(
                repo_path=self.chdir, fs_yaml_file=self.feature_store_yaml, credential=self.token
            )
        return self._store


def pass_context(func: F) -> F:
    """Decorator giving a command the :class:`CliContext` as first argument."""
    return click.pass_obj(func)  # type: ignore[return-value]


# Wide enough that a table piped to a file or a log never squeezes or truncates a name.
_PIPE_WIDTH = 10_000


@functools.cache
def _console(stderr: bool) -> Console:
    from rich.console import Console

    probe = Console(stderr=stderr)
    # Off a terminal, rich assumes 80 columns and cuts table cells with "…": a log wants every name whole.
    return probe if probe.is_terminal else Console(stderr=stderr, width=_PIPE_WIDTH)


def console() -> Console:
    """The console for results (stdout); rich is imported on first use."""
    return _console(False)


def err_console() -> Console:
    """The console for messages and errors (stderr)."""
    return _console(True)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn Ladle's errors into one readable line on stderr and exit status 1."""
    try:
        yield
    except LadleError as exc:
        from rich.markup import escape

        # Messages name extras like 'ladle[data]': escaped, so rich does not read them as markup.
        message = escape(f"{type(exc).__name__}: {exc}")
        err_console().print(f"[bold red]Error:[/] {message}", highlight=False, soft_wrap=True)
        sys.exit(1)


def output_option(func: F) -> F:
    """Add ``--output table|json``."""
    return click.option(
        "--output",
        "-o",
        type=click.Choice(["table", "json"]),
        default="table",
        show_default=True,
        help="Print a table for people or JSON for programs.",
    )(func)


def emit(rows: Sequence[dict[str, Any]], output: str, title: str = "") -> None:
    """Print rows as a rich table or as JSON."""
    if output == "json":
        click.echo(json.dumps(list(rows), indent=2, default=str))
        return
    if not rows:
        console().print(f"no {title or 'rows'}")
        return
    from rich.table import Table

    table = Table(title=title or None)
    for index, column in enumerate(rows[0]):
        # The first column names the object: wrap or squeeze the others, never truncate it.
        table.add_column(str(column), no_wrap=index == 0)
    from rich.markup import escape

    for row in rows:
        table.add_row(*(escape(_cell(v)) for v in row.values()))
    console().print(table)


def _cell(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    return "" if value is None else str(value)
