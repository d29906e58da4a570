"""``ladle import-feast``: a Feast registry's objects into Ladle's registry, with a report.

The objects of one Feast project are mapped (:mod:`ladle.feast_import.mapping`) and written
through the normal apply path: validated together, then written in one registry transaction
(``partial=True``: objects Ladle already has and the Feast registry does not are kept). Saved
datasets (:mod:`ladle.feast_import.saved`) are records, not definitions: they go into the same
transaction as the apply's changes. With
``dry_run`` nothing is written and the report says what would change. Whatever cannot be mapped
is listed with its reason; a feature service that reads an object that was not imported keeps
the rest of its projections and says which it lost.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ladle import definitions as lad
from ladle.definitions.on_demand import OnDemandFeatureView
from ladle.errors import ConfigError
from ladle.feast_import import mapping as m
from ladle.feast_import.label_view import label_view_from_proto
from ladle.feast_import.on_demand import on_demand_from_proto
from ladle.feast_import.reader import read_registry
from ladle.feast_import.saved import (
    VALIDATION_REFERENCE_REASON,
    dataset_changes,
    rebase_storage,
    saved_dataset_from_proto,
    with_row_counts,
)

if TYPE_CHECKING:
    from ladle.definitions.saved_dataset import SavedDataset
    from ladle.repo.plan import ApplyResult
    from ladle.store import FeatureStore


@dataclass(frozen=True)
class Skipped:
    """An object (or part of one) that was not imported, and why."""

    kind: str
    name: str
    reason: str

    def __str__(self) -> str:
        return f"{self.kind} '{self.name}': {self.reason}"


@dataclass
class ImportReport:
    """What an import mapped, what it could not, and what the apply did (or would do)."""

    feast_project: str
    objects: list[lad.Definition] = field(default_factory=list)
    datasets: list[SavedDataset] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    notes: list[Skipped] = field(default_factory=list)
    result: ApplyResult | None = None

    @property
    def imported(self) -> list[tuple[str, str]]:
        """``(kind, name)`` of every mapped object, in apply order."""
        from ladle.repo.plan import kind_of

        objects: list[tuple[str, str]] = [(kind_of(o), o.name) for o in self.objects]
        return objects + [("saved_dataset", d.name) for d in self.datasets]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (what ``--output json`` prints)."""
        return {
            "feast_project": self.feast_project,
            "imported": [{"kind": k, "name": n} for k, n in self.imported],
            "not_imported": [{"kind": s.kind, "name": s.name, "reason": s.reason} for s in self.skipped],
            "notes": [{"kind": s.kind, "name": s.name, "note": s.reason} for s in self.notes],
            "apply": None if self.result is None else self.result.to_dict(),
        }


def projects_in(registry: Any) -> list[str]:
    """The Feast projects a registry holds objects of."""
    names = {p.spec.name for p in registry.projects} | {p.project for p in registry.project_metadata}
    kinds = ("entities", "feature_views", "stream_feature_views", "feature_services", "permissions", "saved_datasets")
    for kind in kinds:
        names |= {o.spec.project for o in getattr(registry, kind)}
    names |= {s.project for s in registry.data_sources}
    return sorted(n for n in names if n)


def _choose_project(registry: Any, project: str | None) -> str:
    found = projects_in(registry)
    if project is not None:
        if project not in found:
            raise ConfigError(f"the Feast registry has no project '{project}'; it has: {', '.join(found) or 'none'}")
        return project
    if len(found) != 1:
        listed = ", ".join(found) or "none"
        raise ConfigError(f"the Feast registry holds projects {listed}; choose one with --project")
    return found[0]


def _mapped(report: ImportReport, kind: str, items: Iterable[Any], build: Callable[[Any], Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        try:
            obj = build(item)
        except m.Unmapped as exc:
            report.skipped.append(Skipped(exc.kind, exc.name, exc.reason))
            continue
        out[obj.name] = obj
    return out


def map_registry(registry: Any, project: str | None = None) -> ImportReport:
    """Map one project of a decoded Feast registry; nothing is written."""
    chosen = _choose_project(registry, project)
    report = ImportReport(chosen)

    def mine(items: Iterable[Any], spec: bool = True) -> list[Any]:
        return [i for i in items if (i.spec.project if spec else i.project) == chosen]

    feast_entities = [e for e in mine(registry.entities) if e.spec.name != m.DUMMY_ENTITY]
    entities = _mapped(report, "entity", feast_entities, m.entity_from_proto)
    sources = _mapped(report, "data source", mine(registry.data_sources, spec=False), m.source_from_proto)
    views: dict[str, lad.FeatureView] = {}
    views.update(
        _mapped(
            report,
            "feature view",
            mine(registry.feature_views),
            lambda v: m.feature_view_from_proto(v, entities, sources),
        )
    )
    views.update(
        _mapped(
            report,
            "stream feature view",
            mine(registry.stream_feature_views),
            lambda v: _stream_view(report, v, entities, sources),
        )
    )
    permissions = _mapped(report, "permission", mine(registry.permissions), lambda p: _permission(report, p))
    views.update(
        _mapped(
            report,
            "label view",
            mine(getattr(registry, "label_views", [])),
            lambda v: label_view_from_proto(v, entities, sources),
        )
    )
    on_demand = _mapped(
        report,
        "on-demand feature view",
        mine(registry.on_demand_feature_views),
        lambda v: on_demand_from_proto(v, views),
    )
    for name, odfv in on_demand.items():
        if odfv.udf.imports:
            imports = "; ".join(odfv.udf.imports.splitlines())
            report.notes.append(
                Skipped("on-demand feature view", name, f"function from its stored text, with {imports}")
            )
    datasets = _mapped(report, "saved dataset", mine(registry.saved_datasets), saved_dataset_from_proto)
    for reference in [r for r in registry.validation_references if r.project == chosen]:
        report.skipped.append(Skipped("validation reference", reference.name, VALIDATION_REFERENCE_REASON))
    services = _mapped(
        report,
        "feature service",
        mine(registry.feature_services),
        lambda s: _service(report, s, {**views, **on_demand}),
    )
    report.objects = [
        *entities.values(),
        *sources.values(),
        *views.values(),
        *on_demand.values(),
        *services.values(),
        *permissions.values(),
    ]
    report.datasets = list(datasets.values())
    return report


def _service(
    report: ImportReport, message: Any, views: dict[str, lad.FeatureView | OnDemandFeatureView]
) -> lad.FeatureService:
    spec = message.spec
    missing = [p.feature_view_name for p in spec.features if p.feature_view_name not in views]
    if missing and len(missing) == len(spec.features):
        raise m.Unmapped("feature service", spec.name, f"none of the views it reads were imported ({missing})")
    if missing:
        kept = [p for p in spec.features if p.feature_view_name in views]
        del spec.features[:]
        spec.features.extend(kept)
        report.notes.append(Skipped("feature service", spec.name, f"imported without {missing} (not imported)"))
    if spec.HasField("logging_config") and spec.logging_config.WhichOneof("destination") != "file_destination":
        where = spec.logging_config.WhichOneof("destination") or "no destination"
        report.notes.append(Skipped("feature service", spec.name, f"logging_config dropped ({where}: not a file)"))
    return m.feature_service_from_proto(message, views)


def _stream_view(
    report: ImportReport, message: Any, entities: dict[str, lad.Entity], sources: dict[str, lad.DataSource]
) -> lad.StreamFeatureView:
    view, notes = m.stream_view_from_proto(message, entities, sources)
    report.notes.extend(Skipped("stream feature view", view.name, n) for n in notes)
    return view


def _permission(report: ImportReport, message: Any) -> lad.Permission:
    permission, notes = m.permission_from_proto(message)
    report.notes.extend(Skipped("permission", permission.name, n) for n in notes)
    return permission


def _rebase_source(source: Any, base: Path) -> None:
    uri = source.file_options.uri
    if uri and "://" not in uri and not Path(uri).is_absolute():
        source.file_options.uri = str((base / uri).resolve())
    if source.HasField("batch_source"):
        _rebase_source(source.batch_source, base)


def rebase_paths(registry: Any, base: Path) -> None:
    """Make every relative file-source path of the registry absolute against ``base`` (the Feast repo)."""
    for source in registry.data_sources:
        _rebase_source(source, base)
    for view in [*registry.feature_views, *registry.stream_feature_views]:
        for field_name in ("batch_source", "stream_source"):
            if view.spec.HasField(field_name):
                _rebase_source(getattr(view.spec, field_name), base)
    for dataset in registry.saved_datasets:
        rebase_storage(dataset, base)


def import_feast(
    store: FeatureStore,
    location: str,
    project: str | None = None,
    *,
    dry_run: bool = False,
    skip_source_validation: bool = False,
    paths_relative_to: str | Path | None = None,
) -> ImportReport:
    """Import one project of the Feast registry at ``location`` into ``store``'s project.

    ``paths_relative_to`` (the Feast repo's directory) makes relative file-source paths absolute;
    without it they stay relative and resolve against the Ladle repo, as in any Ladle definition.
    Saved datasets are written in the apply's registry transaction (their files are not copied).
    """
    registry = read_registry(location)
    if paths_relative_to is not None:
        rebase_paths(registry, Path(paths_relative_to).resolve())
    report = map_registry(registry, project)
    report.datasets = with_row_counts(report.datasets, store.repo_path)
    if not report.objects and not report.datasets:
        return report
    if dry_run:
        report.result = store.plan(report.objects, partial=True, skip_source_validation=skip_source_validation)
    else:
        report.result = store.apply(
            report.objects,
            partial=True,
            skip_source_validation=skip_source_validation,
            applied_by="import-feast",
            records=dataset_changes(report.datasets),
        )
    return report
