"""The lineage graph: data sources → jobs (schedules, stream jobs, materializations) → views → services.

Nodes carry a ``column`` (0 sources, 1 jobs, 2 views, 3 services) so the page can lay the graph
out in layers without a layout engine. With ``focus`` the graph is cut to what is upstream and
downstream of one node, which keeps it readable for registries with thousands of objects.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ladle.errors import RequestError
from ladle.ui.catalog import source_label


@dataclass(frozen=True)
class Job:
    """A job that feeds views: a schedule, a stream job or ad-hoc materializations."""

    job_type: str  # "schedule" | "stream" | "materialize"
    name: str
    feature_views: tuple[str, ...]
    detail: str = ""


@dataclass
class Graph:
    """Nodes and edges as the page draws them."""

    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    edges: set[tuple[str, str]] = field(default_factory=set)

    def node(self, node_id: str, kind: str, name: str, column: int, **extra: Any) -> str:
        self.nodes.setdefault(node_id, {"id": node_id, "kind": kind, "name": name, "column": column, **extra})
        return node_id

    def to_json(self, max_nodes: int | None = None) -> dict[str, Any]:
        """Nodes by column and name, and edges; past ``max_nodes`` the graph is cut (``truncated`` says so)."""
        nodes = sorted(self.nodes.values(), key=lambda n: (n["column"], n["name"]))
        total = len(nodes)
        edges = sorted(self.edges)
        if max_nodes is not None and total > max_nodes:
            nodes = _balanced(nodes, max_nodes)
            kept = {n["id"] for n in nodes}
            edges = [(a, b) for a, b in edges if a in kept and b in kept]
        return {
            "nodes": nodes,
            "edges": [{"from": a, "to": b} for a, b in edges],
            "truncated": {"shown": len(nodes), "total": total} if len(nodes) < total else None,
        }


def _balanced(nodes: Sequence[dict[str, Any]], limit: int) -> list[dict[str, Any]]:
    """At most ``limit`` nodes, shared fairly between the columns (each column keeps its first by name)."""
    columns: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for node in nodes:
        columns[node["column"]].append(node)
    quota = {c: 0 for c in columns}
    left = limit
    while left > 0 and any(quota[c] < len(columns[c]) for c in columns):
        for c in sorted(columns):
            if left and quota[c] < len(columns[c]):
                quota[c] += 1
                left -= 1
    return [n for c in sorted(columns) for n in columns[c][: quota[c]]]


def _sources(graph: Graph, spec: Mapping[str, Any]) -> list[str]:
    """Source node ids of a view's source spec (a push source is drawn with its offline batch source)."""
    label = source_label(spec)
    ids = [graph.node(f"data_source:{label}", "data_source", label, 0, type=spec.get("type", ""))]
    batch = spec.get("batch_source")
    if isinstance(batch, Mapping):
        ids += _sources(graph, batch)
    return ids


def build(views: Iterable[Any], services: Iterable[Any], jobs: Sequence[Job]) -> Graph:
    """The whole graph over the (visible) views and services and the jobs feeding them."""
    graph = Graph()
    jobs_of: dict[str, list[str]] = defaultdict(list)
    for job in jobs:
        job_id = f"job:{job.job_type}:{job.name}"
        for view in job.feature_views:
            jobs_of[view].append(job_id)
    names: set[str] = set()
    for view in views:
        names.add(view.name)
        view_id = graph.node(f"feature_view:{view.name}", "feature_view", view.name, 2, features=len(view.features))
        sources = _sources(graph, view.source.to_spec())
        for job_id in jobs_of.get(view.name, []):
            _, job_type, job_name = job_id.split(":", 2)
            graph.node(job_id, "job", job_name, 1, job_type=job_type)
            graph.edges.update((src, job_id) for src in sources)
            graph.edges.add((job_id, view_id))
        if not jobs_of.get(view.name):
            graph.edges.update((src, view_id) for src in sources)
    for service in services:
        service_id = graph.node(f"feature_service:{service.name}", "feature_service", service.name, 3)
        graph.edges.update((f"feature_view:{v}", service_id) for v in service.feature_view_names if v in names)
    for job in jobs:  # a job's detail (cron, topic) shown on hover
        node = graph.nodes.get(f"job:{job.job_type}:{job.name}")
        if node is not None:
            node["detail"] = job.detail
    return graph


def focus(graph: Graph, node_id: str) -> Graph:
    """The part of ``graph`` upstream and downstream of ``node_id``; RequestError (400) for an unknown node."""
    if node_id not in graph.nodes:
        raise RequestError(f"no lineage node {node_id!r}")
    down: dict[str, list[str]] = defaultdict(list)
    up: dict[str, list[str]] = defaultdict(list)
    for a, b in graph.edges:
        down[a].append(b)
        up[b].append(a)
    keep = {node_id}
    for links in (down, up):
        stack = [node_id]
        while stack:
            for nxt in links[stack.pop()]:
                if nxt not in keep:
                    keep.add(nxt)
                    stack.append(nxt)
    # Keep a source's other views out: only paths through the focus node are drawn.
    cut = Graph({k: v for k, v in graph.nodes.items() if k in keep})
    cut.edges = {(a, b) for a, b in graph.edges if a in keep and b in keep}
    return cut
