"""Feast's remaining verbs: ``ladle delete``, ``projects``, ``on-demand-feature-views`` and ``saved-datasets``.

``delete`` removes one object through the normal apply path (validated, one transaction, the
permission checks of apply). The two browsing groups list what the registry holds of kinds that
come with on-demand feature views and saved datasets; a registry that has no such kind lists none.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import click
import yaml

from ladle.cli.context import CliContext, emit, output_option, pass_context, user_errors
from ladle.errors import ObjectNotFoundError, RepoError
from ladle.registry.base import KINDS, RegistrySnapshot


def _by_name(snapshot: RegistrySnapshot, name: str, kind: str | None) -> tuple[str, Any]:
    found = [(k, snapshot.objects(k)[name]) for k in KINDS if name in snapshot.objects(k) and kind in (None, k)]
    if not found:
        raise ObjectNotFoundError(name, snapshot.project)
    if len(found) > 1:
        kinds = ", ".join(k for k, _ in found)
        raise RepoError(f"several objects are called '{name}' ({kinds}); choose one with --kind")
    return found[0]


@click.command("delete")
@click.argument("name")
@click.option("--kind", type=click.Choice(list(KINDS)), default=None, help="The object's kind, when a name is shared.")
@click.option("--dry-run", is_flag=True, help="Show what would be deleted, change nothing.")
@pass_context
def delete(ctx: CliContext, name: str, kind: str | None, dry_run: bool) -> None:
    """Delete one object (entity, data source, feature view, feature service, permission) by name."""
    with user_errors():
        store = ctx.store()
        found_kind, obj = _by_name(store.snapshot(allow_cache=False), name, kind)
        if dry_run:
            result = store.plan([], objects_to_delete=[obj], partial=True, skip_source_validation=True)
        else:
            result = store.apply([], objects_to_delete=[obj], partial=True, skip_source_validation=True)
    verb = "would delete" if dry_run else "deleted"
    click.echo(f"{verb} {found_kind.replace('_', ' ')} '{name}' (project version {result.version})")


@click.group("projects")
def projects() -> None:
    """Browse the projects of the registry."""


@projects.command("list")
@output_option
@pass_context
def projects_list(ctx: CliContext, output: str) -> None:
    """List every project applied to this registry."""
    with user_errors():
        store = ctx.store()
        lister = getattr(store.registry, "list_projects", None)
        names = list(lister()) if callable(lister) else [store.project]
    current = store.project
    emit([{"name": n, "current": n == current} for n in names], output, "projects")


@projects.command("current_project")
@pass_context
def projects_current(ctx: CliContext) -> None:
    """Print the project of this repo's feature_store.yaml."""
    with user_errors():
        click.echo(ctx.store().project)


@projects.command("describe")
@click.argument("name")
@pass_context
def projects_describe(ctx: CliContext, name: str) -> None:
    """Show how many objects of each kind the project has (this repo's project)."""
    with user_errors():
        store = ctx.store()
        if name != store.project:
            raise RepoError(f"'{name}' is not this repo's project ('{store.project}'); run from its repo (--chdir)")
        snapshot = store.snapshot(allow_cache=False)
        counts = {k: len(snapshot.objects(k)) for k in KINDS}
    click.echo(yaml.safe_dump({"name": name, "version": snapshot.version, "objects": counts}, sort_keys=False))


def _generic_group(group_name: str, kind: str, label: str) -> click.Group:
    """``list`` / ``describe`` over registry kind ``kind`` (empty when this registry has no such kind)."""

    def objects(ctx: CliContext) -> Mapping[str, Any]:
        snapshot = ctx.store().snapshot(allow_cache=False)
        if kind not in KINDS:
            return {}
        return snapshot.objects(kind)

    @click.group(group_name, help=f"Browse {label}s.")
    def group() -> None:
        pass

    @group.command("list", help=f"List {label}s.")
    @output_option
    @pass_context
    def list_command(ctx: CliContext, output: str) -> None:
        with user_errors():
            found = objects(ctx)
        emit(
            [{"name": n, "description": getattr(o, "description", "")} for n, o in sorted(found.items())],
            output,
            f"{label}s",
        )

    @group.command("describe", help=f"Show one {label}'s spec.")
    @click.argument("name")
    @pass_context
    def describe_command(ctx: CliContext, name: str) -> None:
        with user_errors():
            found = objects(ctx)
            if name not in found:
                raise ObjectNotFoundError(name, ctx.store().project, detail=f"no {label} of that name")
        click.echo(json.dumps(found[name].to_spec(), indent=2, default=str))

    return group


on_demand_feature_views = _generic_group("on-demand-feature-views", "on_demand_feature_view", "on-demand feature view")
saved_datasets = _generic_group("saved-datasets", "saved_dataset", "saved dataset")
