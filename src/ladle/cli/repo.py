"""``ladle init | plan | apply | teardown | registry-dump | configuration``: the repo lifecycle."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import click
import yaml

from ladle.cli.context import CliContext, console, err_console, output_option, pass_context, user_errors
from ladle.registry.base import default_applied_by
from ladle.repo import ApplyResult, RepoContents, load_repo
from ladle.security.permissions import auth_configured
from ladle.templates import TEMPLATES, init_repo

_STYLE = {"add": "green", "change": "yellow", "remove": "red"}

skip_source_validation_option = click.option(
    "--skip-source-validation",
    is_flag=True,
    help="Do not read data sources; join-key dtypes must then come from the entities' value_type.",
)


@click.command()
@click.argument("directory", required=False, default="feature_repo", type=click.Path(file_okay=False, path_type=Path))
@click.option("--project", "-p", help="Project name (default: derived from DIRECTORY).")
@click.option("--template", "-t", type=click.Choice(TEMPLATES), default="local", show_default=True, help="Template.")
@click.option("--minimal", "-m", is_flag=True, help="Write only feature_store.yaml (no definitions, no data).")
@pass_context
def init(ctx: CliContext, directory: Path, project: str | None, template: str, minimal: bool) -> None:
    """Create a new feature repo in DIRECTORY (default: feature_repo).

    The repo uses a SQLite registry, a SQLite online store and DuckDB over Parquet offline, and
    holds example commodity-price definitions with generated sample data.
    """
    target = directory if directory.is_absolute() else ctx.chdir / directory
    with user_errors():
        files = init_repo(target, project, template, minimal)
    console().print(f"Created feature repo [bold]{target}[/]:", highlight=False)
    for file in files:
        console().print(f"  {file.relative_to(target)}", highlight=False)
    console().print(f"Next: ladle -c {directory} apply", highlight=False)


@click.command("plan")
@skip_source_validation_option
@output_option
@pass_context
def plan_command(ctx: CliContext, skip_source_validation: bool, output: str) -> None:
    """Show what apply would change in the registry, without changing anything."""
    with user_errors():
        store = ctx.store()
        contents = load_repo(store.repo_path)
        result = store.plan(contents, skip_source_validation=skip_source_validation)
    _warn_unenforced(ctx, contents)
    _warn_pins(result)
    _report(result, output)


@click.command("apply")
@skip_source_validation_option
@click.option(
    "--applied-by",
    envvar="LADLE_APPLIED_BY",
    help="Who/what to record as the author of new versions [default: user@host ladle apply].",
)
@click.option("--force", is_flag=True, help="Apply even if the change breaks a consumer pinned to an older version.")
@output_option
@pass_context
def apply_command(
    ctx: CliContext, skip_source_validation: bool, applied_by: str | None, force: bool, output: str
) -> None:
    """Register the repo's definitions, remove those it no longer has, and prepare the online store."""
    with user_errors():
        store = ctx.store()
        contents = load_repo(store.repo_path)
        _warn_unenforced(ctx, contents)
        result = store.apply(
            contents,
            partial=False,
            skip_source_validation=skip_source_validation,
            applied_by=applied_by or default_applied_by("ladle apply"),
            force=force,
        )
    _warn_pins(result)
    _report(result, output)


def _warn_pins(result: ApplyResult) -> None:
    """Pinned consumers the change breaks (on stderr, before the plan; apply refused them unless --force)."""
    verb = "applied anyway (--force)" if result.applied else "apply will refuse without --force"
    for line in result.warnings:
        err_console().print(f"[bold yellow]Warning:[/] {line}; {verb}.", highlight=False, soft_wrap=True)


def _warn_unenforced(ctx: CliContext, contents: RepoContents) -> None:
    """Permissions under ``auth: no_auth`` protect nothing: say so (on stderr, before the plan)."""
    store = ctx.store()
    if contents.permissions and not auth_configured(store.config.auth):
        names = ", ".join(sorted(p.name for p in contents.permissions))
        err_console().print(
            f"[bold yellow]Warning:[/] the repo defines permissions ({names}) but auth is no_auth: nothing is "
            "enforced until feature_store.yaml configures auth (see docs/security.md).",
            highlight=False,
            soft_wrap=True,
        )


def _report(result: ApplyResult, output: str) -> None:
    if output == "json":
        click.echo(json.dumps(result.to_dict(), indent=2, default=str))
        return
    project = f"project '{result.project}'"
    if not result.has_changes:
        console().print(
            f"No changes: the registry of {project} matches the repo (version {result.version}).", soft_wrap=True
        )
        return
    for diff in result.diffs:
        console().print(f"[{_STYLE[diff.action]}]{diff}[/]", highlight=False, markup=True, soft_wrap=True)
    added, changed, removed = len(result.added), len(result.changed), len(result.removed)
    if result.applied:
        console().print(
            f"Applied to {project}: {added} added, {changed} changed, {removed} removed "
            f"(registry version {result.base_version} → {result.version}).",
            highlight=False,
            soft_wrap=True,
        )
    else:
        console().print(
            f"Plan for {project}: {added} to add, {changed} to change, {removed} to remove. "
            "Run 'ladle apply' to apply.",
            highlight=False,
            soft_wrap=True,
        )


@click.command()
@pass_context
def teardown(ctx: CliContext) -> None:
    """Delete the project's online data and every registry entry of the project."""
    with user_errors():
        store = ctx.store()
        views = len(store.snapshot(allow_cache=False).feature_views)
        store.teardown()
    console().print(f"Tore down project '{store.project}' ({views} feature views).", highlight=False)


@click.command("registry-dump")
@pass_context
def registry_dump(ctx: CliContext) -> None:
    """Print every registry entry of the project as JSON (specs, versions, watermarks)."""
    with user_errors():
        data = ctx.store().registry_dump()
    click.echo(json.dumps(data, indent=2, default=str))


@click.command()
@pass_context
def configuration(ctx: CliContext) -> None:
    """Print the resolved configuration (defaults filled in, passwords masked) as YAML."""
    with user_errors():
        config = ctx.store().config
        data = config.model_dump(mode="json", exclude={"repo_path"})
    click.echo(yaml.safe_dump(mask_secrets(data), sort_keys=False).rstrip())


_URL_PASSWORD = re.compile(r"(://[^:/@\s]+):[^@\s]+@")
_KV_PASSWORD = re.compile(r"((?:password|passwd|token|secret)=)[^,;&\s]+", re.IGNORECASE)
_SECRET_KEYS = ("password", "token", "secret")


def mask_secrets(value: Any, key: str = "") -> Any:
    """A copy of a config tree with passwords in URLs, ``password=`` pairs and secret keys masked."""
    if isinstance(value, dict):
        return {k: mask_secrets(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_secrets(v, key) for v in value]
    if isinstance(value, str):
        if value and any(word in key.lower() for word in _SECRET_KEYS):
            return "***"
        return _KV_PASSWORD.sub(r"\1***", _URL_PASSWORD.sub(r"\1:***@", value))
    return value
