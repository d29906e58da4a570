"""The Redis / Redis Cluster online store (``online_store: {type: redis}``).

>>> config = {"project": "commodities", "online_store": {
...     "type": "redis", "connection_string": "localhost:6379,db=0", "key_ttl_seconds": 604800}}

Key layout, value encoding, write atomicity, deletion, cluster slots, expiry and failure behaviour
are documented in docs/redis.md. In short: one string key per (project, entity, view), hash-tagged
on project + entity; the value is a compact binary row; reads are one MGET for all views and
entities; writes go through a server-side script that keeps only the newest event.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import pyarrow as pa
from pydantic import Field, ValidationError, field_validator, model_validator

try:
    import redis as _redis_driver  # noqa: F401  (only to report a missing extra clearly)
except ModuleNotFoundError as exc:  # pragma: no cover - exercised without the extra installed
    from ladle.errors import MissingExtraError

    raise MissingExtraError("redis", "redis", "redis") from exc

from ladle.config import RepoConfig, StrictModel
from ladle.definitions import FeatureView
from ladle.errors import ConfigError, DefinitionError
from ladle.online.base import ReadRequest, ViewRows
from ladle.online.codec.stamped import ViewLayout, layout_for, prepare
from ladle.online.codec.stamped_decode import Resolver, decode_plain_views, decode_view
from ladle.online.columns import check_write_columns
from ladle.online.keys import (
    entity_join_keys,
    entity_key_matcher,
    exact_entity_key,
    text_entity_keys,
    text_entity_keys_arrow,
)
from ladle.online.redis.cluster import ClusterNodes
from ladle.online.redis.conn import check_tls_files, parse_connection_string
from ladle.online.redis.keys import (
    key_prefix,
    key_suffix,
    meta_key,
    project_pattern,
    row_keys_py,
    view_id,
    view_pattern,
)
from ladle.online.redis.scripts import MAX_ROWS_PER_CALL
from ladle.online.redis.single import IOSettings, SingleNode
from ladle.online.redis.write import Part, WriteRows

_WHERE = "invalid configuration: online_store"
_REREGISTER_SECONDS = 60.0


class RedisOnlineStoreConfig(StrictModel):
    """``online_store:`` block for Redis (Feast's keys, plus connection and batching knobs)."""

    type: Literal["redis"] = "redis"
    connection_string: str = Field(
        "localhost:6379", description="host:port[,host:port...][,key=value...] or a redis:// / rediss:// URL"
    )
    redis_type: Literal["redis", "redis_cluster"] = Field("redis", description="one server, or a Redis Cluster")
    key_ttl_seconds: int | None = Field(None, gt=0, description="expire each row this long after its last write")
    full_scan_for_deletion: bool = Field(True, description="delete a removed view's rows (false: leave them to expire)")
    socket_timeout_seconds: float = Field(5.0, gt=0, description="per-command socket timeout")
    connect_timeout_seconds: float = Field(2.0, gt=0, description="TCP connect timeout")
    max_connections: int = Field(64, gt=0, description="connections per server")
    write_chunk_size: int = Field(
        1000, ge=1, le=MAX_ROWS_PER_CALL, description="rows per server-side upsert call (bounded by Lua's stack)"
    )
    write_batch_rows: int = Field(
        16_384, gt=0, description="rows encoded at a time (bounds client memory; overlaps encoding and server work)"
    )
    delete_scan_count: int = Field(1000, gt=0, description="SCAN COUNT and UNLINK batch size when deleting")

    @field_validator("connection_string")
    @classmethod
    def _parse(cls, value: str) -> str:
        parse_connection_string(value)  # raises ConfigError (without echoing secrets)
        return value

    @model_validator(mode="after")
    def _topology(self) -> RedisOnlineStoreConfig:
        endpoint = parse_connection_string(self.connection_string)
        if self.redis_type == "redis" and len(endpoint.nodes) > 1:
            raise ConfigError(
                f"{_WHERE}.connection_string lists {len(endpoint.nodes)} nodes but redis_type is 'redis'; "
                "set redis_type: redis_cluster or give one host:port"
            )
        if self.redis_type == "redis_cluster" and endpoint.db:
            raise ConfigError(f"{_WHERE}.connection_string: db={endpoint.db} is not possible with Redis Cluster")
        return self


@dataclass(frozen=True)
class _ViewPlan:
    name: str
    vid: bytes
    layout: ViewLayout
    join_keys: tuple[str, ...]


class RedisOnlineStore:
    """Latest feature values in Redis or Redis Cluster; see docs/redis.md."""

    config_class: ClassVar[type[StrictModel]] = RedisOnlineStoreConfig

    def __init__(self, config: RepoConfig) -> None:
        cfg = config.online_store
        if not isinstance(cfg, RedisOnlineStoreConfig):
            raw = cfg.model_dump() if isinstance(cfg, StrictModel) else cfg
            try:
                cfg = RedisOnlineStoreConfig.model_validate(raw)
            except ValidationError as exc:
                raise ConfigError(f"{_WHERE}: not a Redis online store block: {exc.errors()[0]['msg']}") from None
        self.config = cfg
        endpoint = parse_connection_string(cfg.connection_string)
        check_tls_files(endpoint)
        settings = IOSettings(
            socket_timeout=cfg.socket_timeout_seconds,
            connect_timeout=cfg.connect_timeout_seconds,
            max_connections=cfg.max_connections,
            chunk_rows=cfg.write_chunk_size,
            ttl_ms=(cfg.key_ttl_seconds or 0) * 1000,
        )
        self._io: SingleNode | ClusterNodes = (
            ClusterNodes(endpoint, settings) if cfg.redis_type == "redis_cluster" else SingleNode(endpoint, settings)
        )
        self._plans: dict[int, tuple[FeatureView, _ViewPlan]] = {}
        self._old_layouts: dict[tuple[str, bytes, int], ViewLayout] = {}
        self._registered: dict[tuple[str, bytes, int], float] = {}

    @property
    def address(self) -> str:
        """The server or startup nodes, as used in error messages."""
        return self._io.address

    # -- per-view plans ----------------------------------------------------------------------

    def _plan(self, view: FeatureView) -> _ViewPlan:
        entry = self._plans.get(id(view))
        if entry is not None and entry[0] is view:
            return entry[1]
        plan = _ViewPlan(view.name, view_id(view.name), layout_for(view.features), entity_join_keys(view))
        if len(self._plans) > 4096:  # views come from registry snapshots; drop plans of old ones
            self._plans.clear()
        self._plans[id(view)] = (view, plan)
        return plan

    def _register(self, project: str, plan: _ViewPlan) -> None:
        """Record view id → name and the layout in the project's _meta hash.

        Done on the first write of a view in this process and again every ``_REREGISTER_SECONDS``
        (another process may have torn the project down meanwhile), never on every write.
        """
        token = (project, plan.vid, plan.layout.fingerprint)
        if time.monotonic() - self._registered.get(token, -_REREGISTER_SECONDS) < _REREGISTER_SECONDS:
            return
        key = meta_key(project)
        owner_field = b"view:" + plan.vid
        if not self._io.execute("HSETNX", key, owner_field, plan.name):
            owner = self._io.execute("HGET", key, owner_field)
            if owner is not None and owner.decode() != plan.name:
                raise DefinitionError(
                    f"feature views '{plan.name}' and '{owner.decode()}' of project '{project}' share the Redis "
                    f"key id {plan.vid.decode()}; rename one of them"
                )
        self._io.execute("HSETNX", key, b"layout:%08x" % plan.layout.fingerprint, plan.layout.to_json())
        self._registered[token] = time.monotonic()

    def _resolver(self, project: str, vid: bytes) -> Resolver:
        def resolve(fingerprint: int) -> ViewLayout | None:
            token = (project, vid, fingerprint)
            layout = self._old_layouts.get(token)
            if layout is None:
                raw = self._io.execute("HGET", meta_key(project), b"layout:%08x" % fingerprint)
                if raw is None:
                    return None
                layout = self._old_layouts[token] = ViewLayout.from_json(raw)
            return layout

        return resolve

    # -- the OnlineStore protocol ------------------------------------------------------------

    def write(self, project: str, view: FeatureView, rows: pa.Table) -> int:
        """Upsert rows, newest event wins (atomically, on the server); return rows written."""
        check_write_columns(view, rows)
        if rows.num_rows == 0:
            return 0
        plan = self._plan(view)
        part = self._part(plan, rows)  # every check happens before anything is sent
        self._register(project, plan)
        return self._io.upsert(WriteRows(project, plan.vid, iter([part]), self.config.write_batch_rows))

    def write_batches(self, project: str, view: FeatureView, batches: Iterable[pa.Table]) -> int:
        """Write a stream of batches of one view (materialization) as one pipeline; return rows written.

        Unlike one ``write`` per batch, the server never idles between batches: batch k+1 is encoded
        while batch k is being applied. A bad batch stops the stream; earlier batches stay written.
        """
        plan = self._plan(view)
        self._register(project, plan)

        def parts() -> Iterator[Part]:
            for table in batches:
                check_write_columns(view, table)
                if table.num_rows:
                    yield self._part(plan, table)

        return self._io.upsert(WriteRows(project, plan.vid, parts(), self.config.write_batch_rows))

    @staticmethod
    def _part(plan: _ViewPlan, rows: pa.Table) -> Part:
        return Part(
            text_entity_keys_arrow(plan.join_keys, rows), prepare(plan.layout, plan.name, rows, time.time_ns() // 1000)
        )

    def read(self, project: str, requests: Sequence[ReadRequest]) -> list[ViewRows]:
        """One MGET for every view and entity of the request (per slot on a cluster)."""
        plans = [self._plan(r.view) for r in requests]
        groups = [(plan.vid, entities) for plan, entities in zip(plans, _entity_keys(plans, requests), strict=True)]
        blobs = self._io.read_rows(project, groups)
        # Several views at once in one struct call; one view is left to decode_view, which tries the same first.
        rows = len(groups[0][1]) if groups else 0
        if len(groups) > 1 and all(len(entities) == rows for _, entities in groups):
            plain = decode_plain_views([p.layout for p in plans], [r.features for r in requests], blobs, rows)
            if plain is not None:
                return plain
        out, start = [], 0
        for request, plan, (_, entities) in zip(requests, plans, groups, strict=True):
            stop = start + len(entities)
            out.append(decode_view(plan.layout, blobs[start:stop], request.features, self._resolver(project, plan.vid)))
            start = stop
        return out

    def update(self, project: str, keep: Sequence[FeatureView], delete: Sequence[FeatureView]) -> None:
        """Register kept views (detects key-id collisions); delete the rows of removed views."""
        for view in keep:
            self._register(project, self._plan(view))
        if self.config.full_scan_for_deletion:
            for view in delete:
                self.delete_view(project, view)

    def delete_view(self, project: str, view: FeatureView) -> None:
        """Delete every row of one view: incremental SCAN MATCH + UNLINK, never a blocking command."""
        vid = view_id(view.name)
        self._io.scan_unlink(view_pattern(project, vid), self.config.delete_scan_count)
        self._io.execute("HDEL", meta_key(project), b"view:" + vid)
        self._registered = {t: at for t, at in self._registered.items() if t[:2] != (project, vid)}

    def teardown(self, project: str, views: Sequence[FeatureView]) -> None:
        """Remove every key of ``project`` (and nothing of other projects)."""
        self._io.scan_unlink(project_pattern(project), self.config.delete_scan_count)
        self._registered = {t: at for t, at in self._registered.items() if t[0] != project}
        self._old_layouts = {t: v for t, v in self._old_layouts.items() if t[0] != project}

    def erase_entity(self, project: str, view: FeatureView, keys: Mapping[str, Any], dry_run: bool = False) -> int:
        """Delete (or count, ``dry_run``) one entity's rows of ``view`` (:class:`~ladle.online.base.EntityEraser`):
        one UNLINK for a full key, an incremental SCAN of the view's keys for a partial one."""
        plan = self._plan(view)
        exact = exact_entity_key(plan.join_keys, keys)
        if exact is not None:
            key = row_keys_py(project, plan.vid, [exact])[0]
            return int(self._io.execute("EXISTS" if dry_run else "UNLINK", key))
        match = entity_key_matcher(plan.join_keys, keys)
        start, stop = len(key_prefix(project)), -len(key_suffix(plan.vid))
        pattern = view_pattern(project, plan.vid)
        return self._io.scan_unlink(pattern, self.config.delete_scan_count, lambda k: match(k[start:stop]), dry_run)

    def ping(self) -> None:
        """Raise BackendUnavailableError (naming the address) if Redis cannot be reached."""
        self._io.ping()

    def close(self) -> None:
        """Close pooled connections; the store reconnects if used again."""
        self._io.close()


def _entity_keys(plans: Sequence[_ViewPlan], requests: Sequence[ReadRequest]) -> list[list[bytes]]:
    """Entity key bytes per request, encoded once for views given the same key mapping (a read over
    many views of one entity passes one mapping object to each: see ``OnlineRetriever.read``)."""
    if len(plans) == 1:
        return [text_entity_keys(plans[0].join_keys, requests[0].keys)]
    out = []
    seen: dict[tuple[tuple[str, ...], int], list[bytes]] = {}
    for plan, request in zip(plans, requests, strict=True):
        token = (plan.join_keys, id(request.keys))
        entities = seen.get(token)
        if entities is None:
            entities = seen[token] = text_entity_keys(plan.join_keys, request.keys)
        out.append(entities)
    return out
