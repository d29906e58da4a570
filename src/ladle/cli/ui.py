"""``ladle ui``: the web UI on its own port (the feature server also serves it under ``/ui``)."""

from __future__ import annotations

import click

from ladle.cli.context import CliContext, pass_context, user_errors


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    envvar="LADLE_UI_HOST",
    show_envvar=True,
    help="Address to listen on (loopback by default; with auth off the UI shows the whole registry).",
)
@click.option(
    "--port",
    "-p",
    type=click.IntRange(0, 65535),
    default=8888,
    show_default=True,
    envvar="LADLE_UI_PORT",
    show_envvar=True,
    help="Port to listen on.",
)
@pass_context
def ui(ctx: CliContext, host: str, port: int) -> None:
    """Serve the read-only web UI (registry, lineage, jobs, freshness, drift) until Ctrl-C or SIGTERM."""
    with user_errors():
        from ladle.cli.context import err_console
        from ladle.errors import MissingExtraError
        from ladle.security.auth import authenticator_for, exposure_warning

        try:
            import uvicorn
        except ImportError:
            raise MissingExtraError("web UI", "server", "uvicorn") from None
        from ladle.server.status import status_of
        from ladle.ui import UiApp

        store = ctx.store()
        store.snapshot()  # a missing or unreadable registry fails here, as one line
        warning = exposure_warning(host, authenticator_for(store.config.auth, str(store.repo_path)))
        if warning:
            err_console().print(f"[bold yellow]{warning}[/]", highlight=False, soft_wrap=True)
        app = UiApp(store, http_status=lambda exc: status_of(exc).http)
        err_console().print(f"Ladle UI for project '{store.project}' on http://{host}:{port}/ui/", highlight=False)
        uvicorn.run(app, host=host, port=port, log_level="warning", lifespan="on")
