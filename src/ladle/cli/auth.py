"""``ladle auth``: make API keys, hash them, and check who a token authenticates as."""

from __future__ import annotations

import sys

import click
import yaml

from ladle.cli.context import CliContext, pass_context, user_errors


@click.group("auth")
def auth() -> None:
    """API keys and credentials (auth: api_key, oidc, kubernetes)."""


@auth.command("new-key")
@click.option("--name", required=True, help="Who the key stands for (the principal's name).")
@click.option("--role", "roles", multiple=True, help="A role of the caller (repeat for several).")
@click.option("--group", "groups", multiple=True, help="A group of the caller (repeat for several).")
@click.option("--namespace", "namespaces", multiple=True, help="A namespace of the caller (repeat for several).")
def new_key(name: str, roles: tuple[str, ...], groups: tuple[str, ...], namespaces: tuple[str, ...]) -> None:
    """Print a fresh random API key and the `auth.keys` entry holding its hash (the key is shown once)."""
    from ladle.security.api_keys import hash_key
    from ladle.security.api_keys import new_key as make

    key = make()
    entry: dict[str, object] = {"name": name, "sha256": hash_key(key)}
    for field, values in (("roles", roles), ("groups", groups), ("namespaces", namespaces)):
        if values:
            entry[field] = list(values)
    click.echo(f"key: {key}")
    click.echo("# give the key to the caller; put this entry under auth.keys (or in auth.keys_file):")
    click.echo(yaml.safe_dump([entry], sort_keys=False).rstrip())


@auth.command("hash-key")
@click.argument("key", required=False)
def hash_key_command(key: str | None) -> None:
    """Print the SHA-256 a config stores for KEY (read from stdin when KEY is not given)."""
    from ladle.security.api_keys import hash_key

    text = key if key is not None else sys.stdin.readline().strip()
    if not text:
        raise click.UsageError("give the key as an argument or on stdin")
    click.echo(hash_key(text))


@auth.command("whoami")
@pass_context
def whoami(ctx: CliContext) -> None:
    """Check this CLI's token (--token, LADLE_AUTH_TOKEN or the auth: section) and print who it is."""
    with user_errors():
        principal = ctx.store().principal
    click.echo(f"name: {principal.name}")
    click.echo(f"method: {principal.method}")
    for field in ("roles", "groups", "namespaces"):
        values = sorted(getattr(principal, field))
        click.echo(f"{field}: {', '.join(values) if values else '-'}")
