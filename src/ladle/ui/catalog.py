"""The registry as the UI shows it: summary rows, server-side paging and search, details, diffs.

Everything here works on a :class:`~ladle.registry.base.RegistrySnapshot` and plain specs (the
``to_spec()`` form the registry stores), so one code path serves current objects and old versions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ladle.errors import RequestError
from ladle.registry.base import Kind, ObjectVersion, RegistrySnapshot

#: URL segment → registry kind (permissions are not shown: they are the guard, not the catalog).
KINDS: dict[str, Kind] = {
    "entities": "entity",
    "data-sources": "data_source",
    "feature-views": "feature_view",
    "feature-services": "feature_service",
}
#: Largest page a caller may ask for.
MAX_LIMIT = 500
Row = dict[str, Any]


def kind_of(segment: str) -> Kind:
    """The registry kind a URL segment names; RequestError (400) for an unknown one."""
    try:
        return KINDS[segment]
    except KeyError:
        raise RequestError(f"unknown object kind {segment!r}; choose from {sorted(KINDS)}") from None


def _tags(spec: Mapping[str, Any]) -> dict[str, str]:
    return dict(spec.get("tags") or {})


def source_label(spec: Mapping[str, Any]) -> str:
    """A source's name, else what identifies an unnamed one (its path, table or topic)."""
    for key in ("name", "path", "table", "topic", "query"):
        value = spec.get(key)
        if value:
            return str(value)
    return str(spec.get("type", "source"))


def summary(kind: Kind, obj: Any) -> Row:
    """One object's row in a list page."""
    spec = obj.to_spec()
    row: Row = {
        "name": spec["name"],
        "description": spec.get("description", ""),
        "owner": spec.get("owner", ""),
        "tags": _tags(spec),
    }
    if kind == "entity":
        keys = spec.get("join_keys") or ([spec["join_key"]] if spec.get("join_key") else [])
        row |= {"join_keys": keys, "value_type": spec.get("value_type")}
    elif kind == "data_source":
        row |= {"type": spec.get("type", ""), "timestamp_field": spec.get("timestamp_field", "")}
    elif kind == "feature_view":
        row |= {
            "entities": spec.get("entities", []),
            "features": len(spec.get("features", [])),
            "ttl_seconds": spec.get("ttl_seconds"),
            "online": spec.get("online", True),
            "source": source_label(spec.get("source") or {}),
            "stream": "aggregations" in spec or spec.get("source", {}).get("type") in {"kafka", "push"},
        }
    elif kind == "feature_service":
        views = [p.get("view", "") for p in spec.get("features", [])]
        row |= {"feature_views": views, "features": sum(len(p.get("features", [])) for p in spec["features"])}
    return row


def feature_rows(views: Iterable[Any]) -> list[Row]:
    """One row per feature of every view (what the features page and the search list)."""
    rows: list[Row] = []
    for view in views:
        for field in view.features:
            rows.append(
                {
                    "name": field.name,
                    "feature_view": view.name,
                    "ref": f"{view.name}:{field.name}",
                    "dtype": field.dtype.name,
                    "description": field.description,
                    "tags": dict(field.tags),
                    "owner": view.owner,
                }
            )
    return rows


def _sort_key(value: Any) -> tuple[int, Any]:
    if isinstance(value, bool) or value is None:
        return (0, int(bool(value)))
    if isinstance(value, int | float):
        return (1, value)
    if isinstance(value, list | dict):
        return (1, len(value))
    return (2, str(value).lower())


def matches(row: Row, needle: str) -> bool:
    """Whether a case-folded ``needle`` occurs in the row's name, description, owner, view or tags."""
    hay = [row.get("name", ""), row.get("description", ""), row.get("owner", ""), row.get("feature_view", "")]
    hay += [f"{k}={v}" for k, v in (row.get("tags") or {}).items()]
    return any(needle in str(h).lower() for h in hay)


def page(rows: Sequence[Row], query: str, sort: str, order: str, offset: int, limit: int) -> dict[str, Any]:
    """Filter by ``query``, sort by the ``sort`` column, and cut one page (with the total before cutting)."""
    if not 1 <= limit <= MAX_LIMIT:
        raise RequestError(f"limit must be between 1 and {MAX_LIMIT}, got {limit}")
    if offset < 0:
        raise RequestError(f"offset must be 0 or more, got {offset}")
    if order not in {"asc", "desc"}:
        raise RequestError(f"order must be 'asc' or 'desc', got {order!r}")
    needle = query.strip().lower()
    found = [r for r in rows if matches(r, needle)] if needle else list(rows)
    if found and sort and sort not in found[0]:
        raise RequestError(f"cannot sort by {sort!r}; columns: {sorted(found[0])}")
    if sort:
        found.sort(key=lambda r: (_sort_key(r[sort]), r["name"]), reverse=order == "desc")
    return {"total": len(found), "offset": offset, "limit": limit, "items": found[offset : offset + limit]}


def search(groups: Mapping[str, Sequence[Row]], query: str, limit: int = 30) -> list[Row]:
    """Objects and features matching ``query``: exact names first, then prefixes, then any match."""
    needle = query.strip().lower()
    if not needle:
        return []
    hits: list[tuple[int, str, Row]] = []
    for kind, rows in groups.items():
        for row in rows:
            if not matches(row, needle):
                continue
            name = str(row["name"]).lower()
            rank = 0 if name == needle else 1 if name.startswith(needle) else 2 if needle in name else 3
            hit: Row = {"kind": kind, "name": row["name"], "description": row.get("description", "")}
            if "feature_view" in row:
                hit["feature_view"] = row["feature_view"]
            hits.append((rank, name, hit))
    hits.sort(key=lambda h: (h[0], h[1]))
    return [h[2] for h in hits[:limit]]


def related(kind: Kind, name: str, snapshot: RegistrySnapshot, visible: set[str]) -> dict[str, list[str]]:
    """What links to an object: the views of an entity or source, the services of a view, and so on.

    ``visible`` holds ``kind:name`` keys the caller may see; anything else is left out.
    """
    views = [v for v in snapshot.feature_views.values() if f"feature_view:{v.name}" in visible]
    services = [s for s in snapshot.feature_services.values() if f"feature_service:{s.name}" in visible]
    if kind == "entity":
        return {"feature_views": [v.name for v in views if name in [e.name for e in v.entities]]}
    if kind == "data_source":
        return {"feature_views": [v.name for v in views if name in _source_names(v.source.to_spec())]}
    if kind == "feature_view":
        return {"feature_services": [s.name for s in services if name in s.feature_view_names]}
    return {}


def _source_names(spec: Mapping[str, Any]) -> list[str]:
    names = [source_label(spec)]
    if isinstance(spec.get("batch_source"), Mapping):
        names += _source_names(spec["batch_source"])
    return names


def versions(history: Sequence[ObjectVersion]) -> list[Row]:
    """The stored versions of one object, oldest first, with what each did."""
    out: list[Row] = []
    for i, v in enumerate(history):
        change = "deleted" if v.spec is None else "created" if i == 0 or history[i - 1].spec is None else "changed"
        out.append(
            {
                "version": v.version,
                "applied_at": v.applied_at.isoformat(),
                "applied_by": v.applied_by,
                "content_hash": v.content_hash,
                "change": change,
                "spec": v.spec,
            }
        )
    return out


def _flatten(value: Any, path: str, out: dict[str, Any]) -> None:
    if isinstance(value, Mapping) and value:
        for key in sorted(value):
            _flatten(value[key], f"{path}.{key}" if path else str(key), out)
    elif isinstance(value, list) and value and all(isinstance(v, Mapping) and _key(v) for v in value):
        for item in value:  # fields and projections are keyed by name, so a reorder is not a change
            key = _key(item)
            _flatten({k: v for k, v in item.items() if k not in ("name", "view")}, f"{path}[{key}]", out)
            out.setdefault(f"{path}[{key}]", "present")
    else:
        out[path] = value


def _key(item: Mapping[str, Any]) -> str:
    return str(item.get("name") or item.get("view") or "")


def diff(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> list[Row]:
    """Field-level differences between two specs (``None`` for a deletion): path, change, before, after."""
    old: dict[str, Any] = {}
    new: dict[str, Any] = {}
    if before:
        _flatten(before, "", old)
    if after:
        _flatten(after, "", new)
    rows: list[Row] = []
    for path in sorted(old.keys() | new.keys()):
        if path not in new:
            rows.append({"path": path, "change": "removed", "before": old[path], "after": None})
        elif path not in old:
            rows.append({"path": path, "change": "added", "before": None, "after": new[path]})
        elif old[path] != new[path]:
            rows.append({"path": path, "change": "changed", "before": old[path], "after": new[path]})
    return rows
