"""``ladle serve``: the feature server (REST + gRPC). Flags come from :mod:`ladle.server.settings`."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import click

from ladle.cli.context import CliContext, pass_context, user_errors
from ladle.server.settings import ServerSettings, SettingInfo, setting_infos

# Feast's spellings of the same flags, so `feast serve` habits work: -h is the host here, as in Feast
# (help stays --help on this command), and --registry_ttl_sec is Feast's underscore form.
FEAST_ALIASES: dict[str, list[str]] = {"host": ["-h"], "registry_ttl_sec": ["--registry_ttl_sec"], "metrics": ["-m"]}


def _option(info: SettingInfo) -> Callable[[Any], Any]:
    aliases = FEAST_ALIASES.get(info.name, [])
    names = [info.flag] + ([info.short] if info.short else []) + aliases
    if info.type is bool:
        names = [f"{info.flag}/--no-{info.flag[2:]}", *aliases]
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


def settings_from(server_type: str | None, options: dict[str, Any]) -> ServerSettings:
    """The settings of the parsed flags; Feast's ``--type`` picks one of the two servers."""
    if server_type is not None:
        options = {**options, "rest": server_type == "http", "grpc": server_type == "grpc"}
    return ServerSettings(**options)


def _check_auth(auth: dict[str, Any], base: str, settings: ServerSettings) -> None:
    """Validate the ``auth:`` section before any worker starts; warn when the server is exposed without it."""
    from ladle.cli.context import err_console
    from ladle.security.auth import authenticator_for, exposure_warning

    warning = exposure_warning(settings.host, authenticator_for(auth, base), settings.metrics_port)
    if warning:
        err_console().print(f"[bold yellow]{warning}[/]", highlight=False, soft_wrap=True)


@click.command(context_settings={"help_option_names": ["--help"]})
@_with_settings
@click.option(
    "--type",
    "-t",
    "server_type",
    type=click.Choice(["http", "grpc"]),
    default=None,
    help="Feast's choice of one server: 'http' serves only REST, 'grpc' only gRPC [default: both].",
)
@pass_context
def serve(ctx: CliContext, server_type: str | None, **options: Any) -> None:
    """Serve features over REST (Feast's JSON) and gRPC (Feast's protos) until SIGTERM."""
    from ladle.server.runner import serve as run
    from ladle.server.worker import StoreSpec

    with user_errors():
        from ladle.server.tls import TlsFiles

        # Fail here, with a readable error, if the repo, its config, its auth: or a TLS file is wrong.
        store = ctx.store()
        settings = settings_from(server_type, options).with_config(store.config)
        _check_auth(store.config.auth, str(store.repo_path), settings)
        TlsFiles.load(settings)
        level = logging.getLevelName(logging.getLogger().getEffectiveLevel())
        status = run(StoreSpec(ctx.chdir, ctx.feature_store_yaml), settings, level)
    raise SystemExit(status)
