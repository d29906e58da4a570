"""Progress bars for long CLI jobs: on a terminal only, unless asked for.

Logs and pipes get no bar (so no carriage returns between their lines); ``--progress`` forces one,
``--no-progress`` hides it on a terminal.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from ladle.cli.context import F, err_console


def progress_option(func: F) -> F:
    """Add ``--progress/--no-progress`` (default: a bar only when stderr is a terminal)."""
    return click.option(
        "--progress/--no-progress",
        default=None,
        help="Show a progress bar [default: only when stderr is a terminal].",
    )(func)


def want_progress(flag: bool | None) -> bool:
    """The ``--progress`` choice, or by default whether stderr is a terminal."""
    return sys.stderr.isatty() if flag is None else flag


class Steps:
    """A bar over named steps: ``begin(name)`` shows the step, ``done()`` counts it."""

    def __init__(self, progress: Any = None, task: Any = None) -> None:
        self._progress = progress
        self._task = task

    def begin(self, name: str) -> None:
        """Show ``name`` as the step running now."""
        if self._progress is not None:
            self._progress.update(self._task, description=name)

    def done(self) -> None:
        """Count the current step as finished."""
        if self._progress is not None:
            self._progress.advance(self._task)


@contextmanager
def steps(title: str, total: int | None, enabled: bool) -> Iterator[Steps]:
    """A progress bar of ``total`` steps (``None``: a pulsing bar with the elapsed time) on stderr."""
    if not enabled:
        yield Steps()
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    columns: list[Any] = [SpinnerColumn(), TextColumn("{task.description}"), BarColumn()]
    if total is not None:
        columns.append(MofNCompleteColumn())
    columns.append(TimeElapsedColumn())
    with Progress(*columns, console=err_console(), transient=False) as progress:
        yield Steps(progress, progress.add_task(title, total=total))
