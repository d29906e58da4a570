"""What the REST and gRPC front ends share: limits, reads with metrics, writes, materialization.

Both front ends parse their wire format into plain Python (feature refs, columnar entity lists)
and call :class:`ServerCore`; it talks to :class:`~ladle.store.FeatureStore` only.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ladle.definitions import AuthzedAction, FeatureService
from ladle.errors import MaterializationInProgressError, RequestError, RequestTooLargeError
from ladle.registry.base import RegistrySnapshot
from ladle.retrieval.online import OnlineRetriever
from ladle.retrieval.plan import OnlinePlan
from ladle.retrieval.push import PUSH_MODES
from ladle.retrieval.response import OnlineResponse
from ladle.retrieval.variants import read_split, split_of
from ladle.security.auth import Authenticator, authenticator_for
from ladle.security.permissions import Resource
from ladle.security.principal import ANONYMOUS, Principal
from ladle.server import metrics
from ladle.server.settings import ServerSettings
from ladle.store import FeatureStore
from ladle.times import parse_time


@dataclass(frozen=True)
class OnlineRequest:
    """A parsed ``get-online-features`` request (either wire format)."""

    features: tuple[str, ...] | None
    feature_service: str | None
    entities: dict[str, list[Any]]
    full_feature_names: bool = False
    #: The caller's ``X-Request-ID`` / ``x-request-id`` metadata; generated for feature services when absent.
    request_id: str | None = None

    @property
    def rows(self) -> int:
        """The number of entity rows."""
        return len(next(iter(self.entities.values()))) if self.entities else 0


def check_entities(entities: Mapping[str, Sequence[Any]], limit: int) -> int:
    """Validate columnar entities (equal lengths, within the limit); return the row count."""
    if not entities:
        raise RequestError("'entities' is empty: give each join key a list of values")
    lengths = {name: len(values) for name, values in entities.items()}
    rows = max(lengths.values())
    if min(lengths.values()) != rows:
        raise RequestError(f"entity columns have different lengths: {lengths}; every list needs one value per row")
    if rows > limit:
        raise RequestTooLargeError(
            f"{rows} entity rows in one request; the limit is {limit} (max_entities_per_request)"
        )
    return rows


def parse_timestamp(text: Any, what: str) -> datetime:
    """An ISO 8601 timestamp (the materializer's parser); naive values are UTC, as Feast treats them."""
    if not isinstance(text, str):
        raise RequestError(f"'{what}' must be an ISO 8601 timestamp string, got {text!r}")
    return parse_time(text, f"'{what}'")


class ServerCore:
    """The serving logic over one :class:`FeatureStore`, shared by REST and gRPC.

    Every call takes the ``principal`` the front end authenticated (with ``core.auth``, None under no_auth) and
    is checked against the registry's permissions (see :mod:`ladle.security.permissions`); ``via``
    names the front end in the audit log.
    """

    def __init__(self, store: FeatureStore, settings: ServerSettings) -> None:
        self.store = store
        self.settings = settings.with_config(store.config)
        self.project = store.project
        self.enforcer = store.enforcer
        # The server's own retriever (the store's is built lazily for SDK calls): one plan cache.
        self.retriever = OnlineRetriever(store.registry, store.online_store)
        #: Served-feature logging (docs/feature-logging.md); each worker process flushes its own.
        self.feature_logger = store.feature_logger
        self._materializing: set[str] = set()
        self._lock = threading.Lock()
        auth = authenticator_for(store.config.auth, str(store.repo_path))
        #: The authenticator, or None under ``no_auth`` (so the hot path checks one attribute).
        self.auth: Authenticator | None = auth if auth.enabled else None
        #: What ``auth.public`` opens to anonymous callers while auth is on (metrics, docs, ready, reflection).
        self.public = frozenset(auth.config.public)
        #: Whether ``x-api-key`` is accepted in place of ``Authorization`` (``api_key`` auth, ``x_api_key`` on).
        self.accepts_api_key_header = self.auth is not None and bool(getattr(auth.config, "x_api_key", False))
        metrics.watch_reports(store)  # drift, skew and freshness gauges from the stored monitoring reports

    def request_id(self, given: str | None, request: OnlineRequest | None) -> str | None:
        """The id of a read: the caller's, else a generated one for a feature service (``request`` None:
        the caller knows it names one), else None."""
        if given is not None:
            return given[:128]
        if request is not None and request.feature_service is None:
            return None
        return self.feature_logger.new_request_id()

    def is_public(self, endpoint: str) -> bool:
        """Whether anonymous callers may use ``endpoint`` (always, under ``no_auth``)."""
        return self.auth is None or endpoint in self.public

    # -- callers ----------------------------------------------------------------------------
    def credential(self, authorization: str | None, api_key: str | None) -> str | None:
        """What a request authenticates with: ``Authorization``, else ``x-api-key`` as a bearer value if allowed."""
        if authorization is None and api_key is not None and self.accepts_api_key_header:
            return "Bearer " + api_key
        return authorization

    def quick_caller(self, credential: str | None) -> Principal | None:
        """The caller if known without blocking (always under ``no_auth`` and API keys, cached tokens), else None."""
        return ANONYMOUS if self.auth is None else self.auth.quick(credential)

    async def caller(self, credential: str | None) -> Principal:
        """The caller: :meth:`quick_caller`, else checked in a thread (it may fetch the issuer's keys).

        ANONYMOUS under ``no_auth``; AuthenticationError (401 / UNAUTHENTICATED) for a missing or wrong credential.
        """
        found = self.quick_caller(credential)
        if found is None:
            assert self.auth is not None
            found = await asyncio.get_running_loop().run_in_executor(None, self.auth.authenticate, credential)
        return found

    # -- reads ------------------------------------------------------------------------------
    def plan(self, snapshot: RegistrySnapshot, request: OnlineRequest) -> OnlinePlan:
        """The read plan of ``request`` under ``snapshot`` (cached per registry version and shape)."""
        # A service goes by name: the plan cache keys it by (version, name).
        target: Any = request.feature_service if request.feature_service is not None else request.features or ()
        return self.retriever.plan(snapshot, target, request.full_feature_names, tuple(request.entities))

    def get_online_features(
        self, request: OnlineRequest, principal: Principal = ANONYMOUS, via: str = "rest"
    ) -> tuple[OnlineResponse, OnlinePlan]:
        """Read the latest values for ``request`` as ``principal``; raises typed errors for bad requests.

        One registry snapshot and one (cached) plan per request; the plan also tells the encoders
        each column's dtype and the metrics which columns belong to which view. READ_ONLINE is
        checked once per (plan, principal): later requests of that shape pay one dict lookup.
        """
        rows = check_entities(request.entities, self.settings.entity_limit)
        started = time.perf_counter()
        snapshot = self.store.snapshot()
        if request.feature_service is not None:
            split = split_of(snapshot, request.feature_service)
            if split is not None:
                return self._read_split(snapshot, split, request, rows, principal, via, started)
        plan = self.plan(snapshot, request)
        if snapshot.permissions and self.enforcer.applies(principal):
            self._authorize_read(snapshot, plan, request, principal, via)
        response = self.retriever.read(plan, request.entities, rows)
        if request.feature_service is not None:  # O(1): a cached lookup and at most one enqueue
            self.feature_logger.log(snapshot, request.feature_service, response, request.request_id)
        metrics.observe_online_read(rows, time.perf_counter() - started)
        self._observe_views(response, plan, rows)
        return response, plan

    def _read_split(
        self,
        snapshot: RegistrySnapshot,
        split: FeatureService,
        request: OnlineRequest,
        rows: int,
        principal: Principal,
        via: str,
        started: float,
    ) -> tuple[OnlineResponse, OnlinePlan]:
        """A read through an A/B split service: each row from its arm (:mod:`ladle.retrieval.variants`).

        Authorized on the split service itself; the plan returned is the (first) arm's, which the
        encoders use when every row went to one arm.
        """
        if snapshot.permissions and self.enforcer.applies(principal):
            self.enforcer.check(
                snapshot, principal, AuthzedAction.READ_ONLINE, [Resource.of(split)],
                event="get_online_features", source=via,
            )  # fmt: skip
        response, reads = read_split(
            self.retriever, snapshot, split, request.entities, rows, request.full_feature_names
        )
        self.feature_logger.log(snapshot, split.name, response, request.request_id)  # each arm to its own log
        metrics.observe_online_read(rows, time.perf_counter() - started)
        for arm in reads:
            self._observe_views(arm.response, arm.plan, len(arm.rows))
        return response, reads[0].plan

    def _authorize_read(
        self, snapshot: RegistrySnapshot, plan: OnlinePlan, request: OnlineRequest, principal: Principal, via: str
    ) -> None:
        granted: set[Principal] | None = plan.encodings.get("read_online_granted")
        if granted is not None and principal in granted:
            return
        if request.feature_service is not None:
            resources = [Resource.of(snapshot.feature_service(request.feature_service))]
        else:
            resources = [Resource.of(read.view) for read in plan.reads]
            if plan.on_demand is not None:
                resources += [Resource.of(call.odfv) for call in plan.on_demand.calls]
        self.enforcer.check(
            snapshot, principal, AuthzedAction.READ_ONLINE, resources, event="get_online_features", source=via
        )
        # Only grants are kept on the plan (it lives as long as its registry version); a denial re-checks.
        plan.encodings.setdefault("read_online_granted", set()).add(principal)

    def _observe_views(self, response: OnlineResponse, plan: OnlinePlan, rows: int) -> None:
        if response.base is not None:  # an on-demand answer: the reads' columns are in the store read
            response = response.base
        statuses, stamps = response.statuses, response.event_timestamps
        # NOT_FOUND marks whole rows, so every column of a view has it in the same places.
        not_found = [statuses[read.start].count(metrics.NOT_FOUND) for read in plan.reads]
        newest = [max(stamps[read.start], default=0) for read in plan.reads]
        metrics.observe_view_reads(self.project, plan.reads, rows, not_found, newest)

    # -- writes -----------------------------------------------------------------------------
    def push(
        self, source: str, columns: Mapping[str, Any], to: str, principal: Principal = ANONYMOUS, via: str = "rest"
    ) -> int:
        """Push rows (column -> list; scalars broadcast; ISO timestamps) to every view fed by ``source``."""
        if to not in PUSH_MODES:
            raise RequestError(f"'to' must be one of {list(PUSH_MODES)}, got {to!r}")
        written = self.store.push(source, columns, to, principal=principal, source=via)
        metrics.observe_push(source, to)
        return written

    def write_to_online_store(
        self, view_name: str, columns: Mapping[str, Any], principal: Principal = ANONYMOUS, via: str = "rest"
    ) -> int:
        """Write rows straight into one view's online storage."""
        return self.store.write_to_online_store(view_name, columns, principal=principal, source=via)

    # -- materialization --------------------------------------------------------------------
    def views_to_materialize(
        self, names: Sequence[str] | None, principal: Principal = ANONYMOUS, via: str = "rest"
    ) -> list[str]:
        """The requested views (checked to exist, and WRITE_ONLINE granted on them), or every online view."""
        snapshot = self.store.snapshot()
        if names is None:
            views = [v for v in snapshot.feature_views.values() if v.online]
        else:
            views = [snapshot.feature_view(name) for name in dict.fromkeys(names)]
        resources = [Resource.of(v) for v in views]
        self.enforcer.check(snapshot, principal, AuthzedAction.WRITE_ONLINE, resources, event="materialize", source=via)
        return [v.name for v in views]

    def claim(self, views: Sequence[str]) -> None:
        """Mark views as materializing in this worker; 409 (in progress) if one already is."""
        with self._lock:
            busy = sorted(self._materializing.intersection(views))
            if busy:
                raise MaterializationInProgressError(f"feature views {busy} are already being materialized")
            self._materializing.update(views)

    def materialize(
        self,
        views: Sequence[str],
        start: datetime | None,
        end: datetime,
        principal: Principal = ANONYMOUS,
        via: str = "rest",
    ) -> None:
        """Materialize claimed views over ``[start, end]`` (incremental when ``start`` is None), then release them."""
        try:
            for view in views:  # one at a time; the materializer records each view's duration
                if start is None:
                    self.store.materialize_incremental(end, [view], principal=principal, source=via)
                else:
                    self.store.materialize(start, end, [view], principal=principal, source=via)
        finally:
            self.release(views)

    def release(self, views: Sequence[str]) -> None:
        """Drop the claim on ``views``."""
        with self._lock:
            self._materializing.difference_update(views)
