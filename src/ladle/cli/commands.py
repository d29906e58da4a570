"""The table of top-level commands, and the click group that imports a command's module only when it runs.

``ladle --help`` lists every command from this table without importing any command module (they
pull in pandas, pyarrow, SQLAlchemy …), so it starts in a fraction of the time. A test checks that
each entry's short help is the command's own.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

import click
from click.utils import make_default_short_help


@dataclass(frozen=True)
class CommandEntry:
    """Where a top-level command lives, and its one-line help for the command list."""

    module: str
    attribute: str
    short_help: str


COMMANDS: dict[str, CommandEntry] = {
    "version": CommandEntry("ladle.cli.version", "version", "Print Ladle's version."),
    "auth": CommandEntry("ladle.cli.auth", "auth", "API keys and credentials (auth: api_key, oidc, kubernetes)."),
    "init": CommandEntry("ladle.cli.repo", "init", "Create a new feature repo in DIRECTORY (default: feature_repo)."),
    "plan": CommandEntry(
        "ladle.cli.repo", "plan_command", "Show what apply would change in the registry, without changing anything."
    ),
    "apply": CommandEntry(
        "ladle.cli.repo",
        "apply_command",
        "Register the repo's definitions, remove those it no longer has, and prepare the online store.",
    ),
    "teardown": CommandEntry(
        "ladle.cli.repo", "teardown", "Delete the project's online data and every registry entry of the project."
    ),
    "registry-dump": CommandEntry(
        "ladle.cli.repo",
        "registry_dump",
        "Print every registry entry of the project as JSON (specs, versions, watermarks).",
    ),
    "configuration": CommandEntry(
        "ladle.cli.repo",
        "configuration",
        "Print the resolved configuration (defaults filled in, passwords masked) as YAML.",
    ),
    "import-feast": CommandEntry(
        "ladle.cli.feast",
        "import_feast_command",
        "Import a Feast registry (a registry.db protobuf file, or a SQL registry URL) into Ladle's registry.",
    ),
    "delete": CommandEntry(
        "ladle.cli.feast_verbs",
        "delete",
        "Delete one object (entity, data source, feature view, feature service, permission) by name.",
    ),
    "projects": CommandEntry("ladle.cli.feast_verbs", "projects", "Browse the projects of the registry."),
    "on-demand-feature-views": CommandEntry(
        "ladle.cli.feast_verbs", "on_demand_feature_views", "Browse on-demand feature views."
    ),
    "saved-datasets": CommandEntry("ladle.cli.feast_verbs", "saved_datasets", "Browse saved datasets."),
    "entities": CommandEntry("ladle.cli.objects", "entities", "Browse entities."),
    "feature-views": CommandEntry(
        "ladle.cli.objects", "feature_views", "Browse feature views and their version history."
    ),
    "stream-feature-views": CommandEntry(
        "ladle.cli.stream_views",
        "stream_feature_views",
        "Browse stream feature views: their topics, aggregations and transforms.",
    ),
    "feature-services": CommandEntry("ladle.cli.objects", "feature_services", "Browse feature services."),
    "data-sources": CommandEntry("ladle.cli.objects", "data_sources", "Browse named data sources."),
    "permissions": CommandEntry(
        "ladle.cli.permissions", "permissions", "Browse permissions and check what a caller may do."
    ),
    "schedule": CommandEntry(
        "ladle.cli.schedule", "schedule", "Run the schedules declared in the feature repo until SIGTERM or Ctrl-C."
    ),
    "serve": CommandEntry(
        "ladle.cli.serve", "serve", "Serve features over REST (Feast's JSON) and gRPC (Feast's protos) until SIGTERM."
    ),
    "stream": CommandEntry(
        "ladle.cli.stream",
        "stream",
        "Run the stream feature views: Kafka → online and offline stores, until SIGTERM or Ctrl-C.",
    ),
    "ingest": CommandEntry(
        "ladle.cli.ingest", "ingest", "Compute feature rows from raw data and store them offline (idempotent)."
    ),
    "erase": CommandEntry(
        "ladle.cli.erase",
        "erase",
        "Remove one entity's rows from every store and feature log, and report what was removed.",
    ),
    "feed": CommandEntry(
        "ladle.cli.feed", "feed", "Push SIMULATED fresh rows that continue each real series up to now."
    ),
    "publish": CommandEntry(
        "ladle.cli.publish",
        "publish",
        "Publish SIMULATED price ticks and weather observations to Kafka, at the wall-clock time.",
    ),
    "get-online-features": CommandEntry(
        "ladle.cli.online",
        "get_online_features",
        "Print the latest feature values of some entities (ttl applied, like the server).",
    ),
    "materialize": CommandEntry(
        "ladle.cli.materialize",
        "materialize_command",
        "Load the newest row per entity with START <= event time <= END (ISO 8601; naive = UTC).",
    ),
    "materialize-incremental": CommandEntry(
        "ladle.cli.materialize",
        "materialize_incremental_command",
        "Materialize each view from its watermark (first run: END - ttl) up to END (ISO 8601).",
    ),
    "ui": CommandEntry(
        "ladle.cli.ui",
        "ui",
        "Serve the read-only web UI (registry, lineage, jobs, freshness, drift) until Ctrl-C or SIGTERM.",
    ),
    "monitor": CommandEntry(
        "ladle.cli.monitor", "monitor", "Drift, online/offline skew and freshness checks (exit 2 past a threshold)."
    ),
    "get-historical-features": CommandEntry(
        "ladle.cli.historical",
        "get_historical_features",
        "Join features onto an entity frame as of each row's timestamp and write the result.",
    ),
    "validate": CommandEntry(
        "ladle.cli.validate", "validate", "Check a saved dataset or a Parquet file against a validation reference."
    ),
}


def load_command(name: str) -> click.Command:
    """Import the module of command ``name`` and return the command."""
    entry = COMMANDS[name]
    command = getattr(importlib.import_module(entry.module), entry.attribute)
    if not isinstance(command, click.Command):
        raise TypeError(f"{entry.module}.{entry.attribute} is not a click command")
    return command


class LazyGroup(click.Group):
    """A group whose commands come from :data:`COMMANDS`, imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return load_command(cmd_name) if cmd_name in COMMANDS else None

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(len(n) for n in names)
        rows = [(n, make_default_short_help(COMMANDS[n].short_help, limit)) for n in names]
        with formatter.section("Commands"):
            formatter.write_dl(rows)
