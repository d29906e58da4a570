"""The JSON the pages load (``/ui/api/...``): one method per endpoint, each for one caller.

Every answer is filtered by the registry's permissions exactly as the SDK's ``list_*`` calls are
(DESCRIBE on each object); a detail page of an object the caller may not describe is a 403. Job
runs and monitoring reports are shown only when the caller may see every view they are about.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

import sqlalchemy as sa

from ladle.definitions import AuthzedAction
from ladle.errors import ObjectNotFoundError, RepoError, RequestError
from ladle.registry.base import Kind, RegistrySnapshot, RunRecorder
from ladle.registry.engine import Database
from ladle.registry.reports import REPORT_KINDS, ReportJournal
from ladle.registry.schedule_runs import ScheduleJournal
from ladle.registry.schema import projects
from ladle.registry.stream_sessions import StreamSessions
from ladle.security.permissions import Resource
from ladle.security.principal import Principal
from ladle.store import FeatureStore
from ladle.ui import activity, catalog, lineage, monitoring
from ladle.ui.lineage import Job

Query = Mapping[str, str]
#: Nodes drawn for the whole lineage graph; beyond it the page asks for a focus (search, or a click).
MAX_GRAPH_NODES = 400


@dataclass(frozen=True)
class View:
    """What one caller may see of one registry snapshot."""

    snapshot: RegistrySnapshot
    objects: dict[Kind, list[Any]]
    restricted: bool  # permissions are registered and apply to this caller

    @property
    def keys(self) -> set[str]:
        """``kind:name`` of every visible object."""
        return {f"{kind}:{o.name}" for kind, objs in self.objects.items() for o in objs}

    def may_see(self, name: str) -> bool:
        """Whether a view or service called ``name`` is visible (anything goes without permissions)."""
        if not self.restricted:
            return True
        return any(o.name == name for o in self.objects["feature_view"] + self.objects["feature_service"])


def _int(query: Query, name: str, default: int) -> int:
    text = query.get(name)
    if text is None or text == "":
        return default
    try:
        return int(text)
    except ValueError:
        raise RequestError(f"'{name}' must be an integer, got {text!r}") from None


class UiApi:
    """The UI's reads over one :class:`FeatureStore` (its registry database and journals)."""

    def __init__(self, store: FeatureStore, auth_type: str = "no_auth") -> None:
        self.store = store
        self.auth_type = auth_type

    @cached_property
    def _db(self) -> Database:
        return Database(self.store.config.registry, self.store.repo_path)

    @cached_property
    def reports_journal(self) -> ReportJournal:
        """The monitoring reports of the project."""
        return ReportJournal(self._db, self.store.project)

    @cached_property
    def schedules_journal(self) -> ScheduleJournal:
        """The schedule runs of the project."""
        return ScheduleJournal(self._db, self.store.project)

    @cached_property
    def schedules(self) -> list[Any]:
        """The schedules declared in the repo (none if the repo's schedules cannot be imported here)."""
        from ladle.schedule import collect_schedules

        try:
            return collect_schedules(self.store.repo_path)
        except (RepoError, OSError):
            return []

    def close(self) -> None:
        """Release the journal's connections."""
        if "_db" in self.__dict__:
            self._db.close()

    def view(self, principal: Principal) -> View:
        """The current snapshot, cut to what ``principal`` may describe."""
        snapshot = self.store.snapshot()
        enforcer = self.store.enforcer
        restricted = bool(snapshot.permissions) and enforcer.applies(principal)
        objects: dict[Kind, list[Any]] = {}
        for kind in catalog.KINDS.values():
            found = snapshot.objects(kind).values()
            objects[kind] = enforcer.permitted(snapshot, principal, AuthzedAction.DESCRIBE, found)
        return View(snapshot, objects, restricted)

    # -- endpoints ----------------------------------------------------------------------------
    def session(self, principal: Principal) -> dict[str, Any]:
        """Who is asking, about which project, under which auth type."""
        return {"project": self.store.project, "principal": principal.name, "auth": self.auth_type}

    def overview(self, principal: Principal) -> dict[str, Any]:
        """Counts per kind, the registry version, recent job runs and the newest report per kind."""
        v = self.view(principal)
        counts = {seg: len(v.objects[kind]) for seg, kind in catalog.KINDS.items()}
        counts["features"] = sum(len(fv.features) for fv in v.objects["feature_view"])
        runs = self._runs(v, 200)
        reports = [
            activity.report_row(r)
            for r in self.reports_journal.reports(limit=20)
            if v.may_see(r.subject)
        ][:10]  # fmt: skip
        health = {"failed_runs": sum(r["status"] == "failed" for r in runs)}
        for kind in ("drift", "skew"):
            latest = self.reports_journal.latest(kind).values()
            health[f"{kind}_breaches"] = sum(r.status == "breach" for r in latest if v.may_see(r.subject))
        fresh = self._freshness(v)
        health["freshness_breaches"] = sum(r["status"] == "breach" for r in fresh)
        return {"project": v.snapshot.project, "version": v.snapshot.version, "counts": counts,
                "health": health, "runs": runs[:10], "reports": reports}  # fmt: skip

    def projects(self, principal: Principal) -> dict[str, Any]:
        """Projects in this registry database (only the served one when auth is on)."""
        rows = self._db.read_retrying(lambda conn: conn.execute(sa.select(projects)).mappings().all())
        out = [
            {
                "name": r["project_id"],
                "version": r["version"],
                "created": r["created_timestamp"].isoformat(),
                "last_updated": r["last_updated_timestamp"].isoformat(),
                "last_applied_by": r["last_applied_by"],
                "served": r["project_id"] == self.store.project,
            }
            for r in rows
            if self.auth_type == "no_auth" or r["project_id"] == self.store.project
        ]
        return {"items": sorted(out, key=lambda p: (not p["served"], p["name"]))}

    def objects(self, principal: Principal, segment: str, query: Query) -> dict[str, Any]:
        """One page of one kind's summary rows (``q``, ``sort``, ``order``, ``offset``, ``limit``)."""
        v = self.view(principal)
        if segment == "features":
            rows = catalog.feature_rows(v.objects["feature_view"])
        else:
            kind = catalog.kind_of(segment)
            rows = [catalog.summary(kind, o) for o in v.objects[kind]]
        return catalog.page(
            rows, query.get("q", ""), query.get("sort", "name"), query.get("order", "asc"),
            _int(query, "offset", 0), _int(query, "limit", 50),
        )  # fmt: skip

    def _described(self, v: View, principal: Principal, kind: Kind, name: str) -> Any:
        getters = {"entity": v.snapshot.entity, "data_source": v.snapshot.data_source,
                   "feature_view": v.snapshot.feature_view, "feature_service": v.snapshot.feature_service}  # fmt: skip
        obj = getters[kind](name)  # the registry's own not-found error (404)
        if v.snapshot.permissions:
            self.store.enforcer.check(
                v.snapshot, principal, AuthzedAction.DESCRIBE, [Resource.of(obj)], event="ui_describe", source="ui"
            )
        return obj

    def detail(self, principal: Principal, segment: str, name: str) -> dict[str, Any]:
        """One object: its summary, its spec, what links to it and how many versions it has."""
        kind = catalog.kind_of(segment)
        v = self.view(principal)
        obj = self._described(v, principal, kind, name)
        history = self.store.registry.history(kind, name)
        answer = {
            "kind": kind,
            "summary": catalog.summary(kind, obj),
            "spec": obj.to_spec(),
            "related": catalog.related(kind, name, v.snapshot, v.keys),
            "versions": len(history),
            "version": history[-1].version if history else None,
        }
        if kind == "feature_view":  # what happened to it: its last runs and how far it is materialized
            answer["runs"] = [r for r in self._runs(v, 200) if name in r["feature_views"]][:10]
            mark = self.store.registry.watermark(name)
            answer["watermark"] = mark.isoformat() if mark is not None else None
            default = self.store.config.monitoring.freshness_slo_seconds
            latest = self.reports_journal.latest("freshness")
            [answer["freshness"]] = monitoring.freshness_rows([obj], {name: mark}, latest, default, datetime.now(UTC))
        if kind in ("feature_view", "feature_service"):  # the newest drift and skew report about it
            found = (self.reports_journal.latest(k).get(name) for k in ("drift", "skew"))
            answer["reports"] = [activity.report_row(r) for r in found if r is not None]
        return answer

    def versions(self, principal: Principal, segment: str, name: str) -> dict[str, Any]:
        """Every stored version of an object (its permissions are those of its last definition)."""
        kind = catalog.kind_of(segment)
        history = self.store.registry.history(kind, name)
        if not history:
            raise ObjectNotFoundError(name, self.store.project, detail=f"No versions of this {kind.replace('_', ' ')}.")
        v = self.view(principal)
        if name in v.snapshot.objects(kind):
            self._described(v, principal, kind, name)
        elif v.snapshot.permissions:  # deleted: guarded by its last definition's tags, as FeatureStore.history
            specs = [h.spec for h in history if h.spec is not None]
            tags = (specs[-1].get("tags") or {}) if specs else {}
            resource = Resource(kind, name, tuple(sorted((str(k), str(t)) for k, t in tags.items())))
            self.store.enforcer.check(
                v.snapshot, principal, AuthzedAction.DESCRIBE, [resource], event="ui_history", source="ui"
            )
        return {"kind": kind, "name": name, "items": catalog.versions(history)}

    def diff(self, principal: Principal, segment: str, name: str, query: Query) -> dict[str, Any]:
        """Field-level diff between versions ``a`` and ``b`` (default: the last two)."""
        items = self.versions(principal, segment, name)["items"]
        by_version = {i["version"]: i for i in items}
        a = _int(query, "a", items[-2]["version"] if len(items) > 1 else items[-1]["version"])
        b = _int(query, "b", items[-1]["version"])
        missing = sorted({a, b} - by_version.keys())
        if missing:
            raise RequestError(f"no version(s) {missing} of '{name}'; stored: {sorted(by_version)}")
        changes = catalog.diff(by_version[a]["spec"], by_version[b]["spec"])
        return {"name": name, "a": a, "b": b, "changes": changes}

    def search(self, principal: Principal, query: Query) -> dict[str, Any]:
        """Objects and features matching ``q`` (at most ``limit``)."""
        v = self.view(principal)
        groups = {seg: [catalog.summary(kind, o) for o in v.objects[kind]] for seg, kind in catalog.KINDS.items()}
        groups["features"] = catalog.feature_rows(v.objects["feature_view"])
        limit = min(max(_int(query, "limit", 30), 1), catalog.MAX_LIMIT)
        return {"q": query.get("q", ""), "items": catalog.search(groups, query.get("q", ""), limit)}

    def lineage(self, principal: Principal, query: Query) -> dict[str, Any]:
        """The lineage graph (``focus``: one node id, to cut it to that node's paths)."""
        v = self.view(principal)
        graph = lineage.build(v.objects["feature_view"], v.objects["feature_service"], self._jobs(v))
        if query.get("focus"):
            return lineage.focus(graph, query["focus"]).to_json()
        return graph.to_json(min(max(_int(query, "max_nodes", MAX_GRAPH_NODES), 1), 5000))

    def _jobs(self, v: View) -> list[Job]:
        views = {fv.name: fv for fv in v.objects["feature_view"]}
        jobs = [
            Job("schedule", s.name, tuple(n for n in s.feature_views if n in views), s.cron.expression)
            for s in self.schedules
        ]
        scheduled = {n for job in jobs for n in job.feature_views}
        for name, fv in views.items():
            spec = fv.to_spec()
            if "aggregations" in spec or (spec.get("source") or {}).get("type") == "kafka":
                jobs.append(Job("stream", name, (name,), "ladle stream"))
        manual = {r["lane"] for r in self._runs(v, 500) if r["job_type"] == "materialize"} - scheduled
        jobs += [Job("materialize", n, (n,), "ladle materialize") for n in sorted(manual)]
        return jobs

    def _runs(self, v: View, limit: int, job_type: str = "") -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        registry = self.store.registry
        if job_type in ("", "materialize") and isinstance(registry, RunRecorder) and hasattr(registry, "runs"):
            rows += activity.materialization_rows(registry.runs(None, limit))
        if job_type in ("", "schedule"):
            rows += activity.schedule_rows(self.schedules_journal.runs(None, limit))
        if job_type in ("", "stream"):
            rows += activity.stream_rows(StreamSessions(self._db, self.store.project).sessions(limit))
        return activity.visible_runs(rows, v.may_see)[:limit]

    def jobs(self, principal: Principal, query: Query) -> dict[str, Any]:
        """Job runs (``type``: materialize, schedule, stream; ``limit``) and a summary per job."""
        job_type = query.get("type", "")
        if job_type not in {"", "materialize", "schedule", "stream"}:
            raise RequestError(f"type must be materialize, schedule or stream, got {job_type!r}")
        limit = min(max(_int(query, "limit", 200), 1), 2000)
        rows = self._runs(self.view(principal), limit, job_type)
        return {"runs": rows, "summary": activity.job_summary(rows)}

    def freshness(self, principal: Principal) -> dict[str, Any]:
        """Each view's SLO (tag or config), live age, watermark and what its newest freshness report said."""
        return {"items": self._freshness(self.view(principal))}

    def _freshness(self, v: View) -> list[dict[str, Any]]:
        views = v.objects["feature_view"]
        registry = self.store.registry
        all_marks = getattr(registry, "watermarks", None)  # one query when the registry has it (SQL does)
        if callable(all_marks):
            watermarks: dict[str, Any] = dict(all_marks())
        else:
            watermarks = {fv.name: registry.watermark(fv.name) for fv in views}
        default = self.store.config.monitoring.freshness_slo_seconds
        latest = self.reports_journal.latest("freshness")
        return monitoring.freshness_rows(views, watermarks, latest, default, datetime.now(UTC))

    def baselines(self, principal: Principal) -> dict[str, Any]:
        """The saved drift baselines (the one in force per name) about views the caller may see."""
        return {"items": monitoring.baselines(self._db, self.store.project, self.view(principal).may_see)}

    def reports(self, principal: Principal, query: Query) -> dict[str, Any]:
        """Report list (``kind``, ``subject``, ``offset``, ``limit``), payloads left out."""
        kind = query.get("kind") or None
        if kind is not None and kind not in REPORT_KINDS:
            raise RequestError(f"kind must be one of {list(REPORT_KINDS)}, got {kind!r}")
        v = self.view(principal)
        found = self.reports_journal.reports(
            kind, query.get("subject") or None, limit=min(max(_int(query, "limit", 100), 1), 1000),
            offset=max(_int(query, "offset", 0), 0),
        )  # fmt: skip
        return {"items": [activity.report_row(r) for r in found if v.may_see(r.subject)]}

    def report(self, principal: Principal, kind: str, subject: str, query: Query) -> dict[str, Any]:
        """One subject's reports of one kind: the chosen (``id``, default newest) in full, and scores over time."""
        if kind not in ("drift", "skew"):
            raise RequestError(f"kind must be drift or skew, got {kind!r}")
        v = self.view(principal)
        if not v.may_see(subject):  # a report is about a view, or a service (skew of a service, served drift)
            about: Kind = "feature_service" if subject in v.snapshot.feature_services else "feature_view"
            self._described(v, principal, about, subject)  # 403 or 404, with the registry's words
        history = self.reports_journal.reports(kind, subject, limit=200)
        if not history:
            raise ObjectNotFoundError(subject, self.store.project, detail=f"No {kind} reports about it.")
        chosen = history[0]
        if query.get("id"):
            wanted = _int(query, "id", 0)
            chosen = next((r for r in history if r.report_id == wanted), None) or _missing(wanted, subject)
        series = activity.drift_series(history) if kind == "drift" else activity.skew_series(history)
        return {"report": chosen.to_dict(), "history": [activity.report_row(r) for r in history], "series": series}


def _missing(report_id: int, subject: str) -> Any:
    raise ObjectNotFoundError(f"report {report_id}", None, detail=f"Not among the newest 200 about '{subject}'.")
