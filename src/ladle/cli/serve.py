"""``ladle serve``: the feature server (REST + gRPC). Flags come from :mod:`ladle.server.settings`."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import click

from ladle.cli.context import CliContext, pass_context, user_errors
from ladle.server.settings import ServerSettings, SettingInfo, setting_infos


def _option(info: SettingInfo) -> Callable[[Any], Any]:
    names = [info.flag] + ([info.short] if info.short else [])
    if info.type is bool:
        names = [f"{info.flag}/--no-{info.flag[2:]}"]
        return click.option(
            *names,
            info.name,
            default=info.default,
            envvar=info.env,
            show_envvar=True,
            show_default=True,
            help=info.help,
        )
    return click.option(
        *names,
        info.name,
        type=info.type,
        default=info.default,
        envvar=info.env,
        show_envvar=True,
        show_default=info.default is not None,
        help=info.help,
    )


def _with_settings(func: Callable[..., Any]) -> Callable[..., Any]:
    for info in reversed(setting_infos()):
        func = _option(info)(func)
    return func


@click.command()
@_with_settings
@pass_context
def serve(ctx: CliContext, **options: Any) -> None:
    """Serve features over REST (Feast's JSON) and gRPC (Feast's protos) until SIGTERM."""
    from ladle.server.runner import serve as run
    from ladle.server.worker import StoreSpec

    with user_errors():
        settings = ServerSettings(**options)
        ctx.store()  # fail here, with a readable error, if the repo or its config is wrong
        level = logging.getLevelName(logging.getLogger().getEffectiveLevel())
        status = run(StoreSpec(ctx.chdir, ctx.feature_store_yaml), settings, level)
    raise SystemExit(status)


COMMANDS = [serve]
