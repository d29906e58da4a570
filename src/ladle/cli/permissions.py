"""``ladle permissions list | describe | check``: the registry's permissions and what they allow."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import click

from ladle.cli.context import CliContext, emit, err_console, output_option, pass_context, user_errors
from ladle.cli.objects import describe_object, list_objects, tags_option
from ladle.definitions import AuthzedAction, Permission
from ladle.definitions.permission import RESOURCE_KINDS
from ladle.registry.base import KINDS
from ladle.security.permissions import Resource, auth_configured, why_denied
from ladle.security.principal import Principal


@click.group("permissions")
def permissions() -> None:
    """Browse permissions and check what a caller may do."""


def _permission_row(p: Permission) -> dict[str, Any]:
    return {
        "name": p.name,
        "types": list(p.types),
        "name patterns": list(p.name_patterns) or ["(any)"],
        "actions": sorted(a.name for a in p.actions),
        "policy": repr(p.policy),
        "required tags": p.required_tags,
    }


@permissions.command("list")
@tags_option
@output_option
@pass_context
def permissions_list(ctx: CliContext, tags: dict[str, str], output: str) -> None:
    """List the project's permissions."""
    list_objects(ctx, lambda s: s.permissions, _permission_row, tags, output, "permissions")


@permissions.command("describe")
@click.argument("name")
@output_option
@pass_context
def permissions_describe(ctx: CliContext, name: str, output: str) -> None:
    """Show one permission's spec and current version."""
    describe_object(ctx, "permission", name, output)


def _action(_ctx: click.Context, _param: click.Parameter, values: Sequence[str]) -> list[AuthzedAction]:
    out = []
    for value in values:
        key = value.strip().upper()
        if key not in AuthzedAction.__members__:
            raise click.BadParameter(f"{value!r} is not one of {', '.join(AuthzedAction.__members__)}")
        out.append(AuthzedAction[key])
    return out


@permissions.command("check")
@click.option(
    "--action", "actions", multiple=True, callback=_action, metavar="ACTION", help="Only this action (repeatable)."
)
@click.option("--type", "kind", type=click.Choice(list(RESOURCE_KINDS)), help="Only resources of this type.")
@click.option("--name", help="Only the resource of this name (need not exist yet: checks CREATE).")
@click.option("--role", "roles", multiple=True, help="Check for a caller with this role instead of yourself.")
@click.option("--group", "groups", multiple=True, help="... with this group.")
@click.option("--namespace", "namespaces", multiple=True, help="... in this namespace.")
@click.option("--denied-only", is_flag=True, help="Print only what is denied.")
@output_option
@pass_context
def permissions_check(
    ctx: CliContext,
    actions: list[AuthzedAction],
    kind: str | None,
    name: str | None,
    roles: tuple[str, ...],
    groups: tuple[str, ...],
    namespaces: tuple[str, ...],
    denied_only: bool,
    output: str,
) -> None:
    """Show, per resource and action, whether a caller (you, or --role/--group/--namespace) is allowed.

    Exits with status 1 when --type, --name and one --action are given and that action is denied.
    """
    with user_errors():
        store = ctx.store()
        snapshot = store.snapshot(allow_cache=False)
        if roles or groups or namespaces:
            caller = Principal("(given)", frozenset(roles), frozenset(groups), frozenset(namespaces), "check")
        else:
            caller = store.principal
        resources = _resources(snapshot, kind, name)
    perms = list(snapshot.permissions.values())
    rows = []
    for resource in resources:
        for action in actions or list(AuthzedAction):
            why = why_denied(perms, caller, action, resource)
            if denied_only and why is None:
                continue
            rows.append(
                {
                    "type": resource.kind,
                    "name": resource.name,
                    "action": action.name,
                    "decision": "allowed" if why is None else "denied",
                    "reason": "" if why is None else why,
                }
            )
    if not perms:
        err_console().print("No permissions are registered: every caller may do everything.", highlight=False)
    elif not auth_configured(store.config.auth):
        err_console().print(
            "Note: auth is no_auth, so nothing is enforced; this shows what the permissions would decide.",
            highlight=False,
        )
    if output == "json":
        click.echo(json.dumps(rows, indent=2))
    else:
        emit(rows, output, f"permissions of {caller.name}")
    single = kind is not None and name is not None and len(actions) == 1
    if single and rows and rows[0]["decision"] == "denied":
        raise SystemExit(1)


def _resources(snapshot: Any, kind: str | None, name: str | None) -> list[Resource]:
    kinds = [kind] if kind is not None else list(KINDS)
    out = []
    for k in kinds:
        objects = snapshot.objects(k)
        if name is not None:
            obj = objects.get(name)
            out.append(Resource.of(obj) if obj is not None else Resource(k, name))
        else:
            out.extend(Resource.of(obj) for obj in objects.values())
    return out
