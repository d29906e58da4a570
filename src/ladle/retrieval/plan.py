"""The plan of an online read: a request shape resolved once per registry version.

An :class:`OnlinePlan` says everything about a ``get_online_features`` call that does not depend on
the entity values: which views to read (and which of their features), the output columns in order
(join keys first, then each view's features), where each view's outputs sit in the response, each
output column's dtype, and the ttl of each view. :class:`PlanCache` keeps plans per
(registry version, features, ``full_feature_names``, entity column names), so a new registry version
gets new plans and old ones age out.

Front ends derive their own per-plan encodings (a JSON or protobuf skeleton, per-view encoders) and
memoize them in :attr:`OnlinePlan.encodings`, so they live exactly as long as the plan.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from ladle.definitions import FeatureService, FeatureView
from ladle.registry.base import RegistrySnapshot
from ladle.types import DType, ValueType

Features = Sequence[str] | FeatureService | str


@dataclass(frozen=True)
class ViewRead:
    """One view of a plan: what to ask the store and where its answer goes in the response.

    ``outputs`` are the response column names of ``features`` (prefixed with the view name under
    ``full_feature_names``); they occupy response columns ``start`` to ``stop`` (exclusive).
    """

    view: FeatureView
    features: tuple[str, ...]
    outputs: tuple[str, ...]
    key_columns: tuple[tuple[str, str], ...]  # (view join key, request column)
    ttl_us: int
    start: int
    stop: int

    @property
    def name(self) -> str:
        """The view's name (the label of its metrics)."""
        return self.view.name


@dataclass(frozen=True, eq=False)
class OnlinePlan:
    """A resolved ``get_online_features`` request shape (see the module docstring); built by
    :func:`ladle.retrieval.online.compile_plan`.

    ``feature_names`` is the response's column order: ``key_columns`` (the request's entity columns
    some view joins on, in request order), then each of ``reads`` in turn. ``dtypes[i]`` is the dtype
    of column ``i`` (join keys: the entity column's; ``None`` if no view declares it).
    """

    project: str
    version: int
    key_columns: tuple[str, ...]
    key_types: dict[str, ValueType | None]
    reads: tuple[ViewRead, ...]
    feature_names: tuple[str, ...]
    dtypes: tuple[DType | None, ...]
    uses_ttl: bool
    entityless: bool  # some view has no entities: it reads the dummy key "" for every row
    encodings: dict[str, Any] = field(default_factory=dict, repr=False)
    #: Set when the request names on-demand views: the step that turns the read into the answer
    #: (:class:`ladle.retrieval.on_demand.OnDemandStep`); the read's own columns are then internal.
    on_demand: Any = None

    @cached_property
    def key_mappings(self) -> tuple[tuple[tuple[str, str], ...], ...]:
        """The distinct ``key_columns`` of the reads (how each view maps request columns to join keys)."""
        return tuple(dict.fromkeys(r.key_columns for r in self.reads))

    def dtype_map(self) -> dict[str, DType]:
        """``{output name: dtype}`` for the columns whose dtype is known."""
        if self.on_demand is not None:
            return dict(self.on_demand.dtypes)
        return {n: d for n, d in zip(self.feature_names, self.dtypes, strict=True) if d is not None}


class PlanCache:
    """Plans by (registry version, features, ``full_feature_names``, entity column names), LRU-bounded.

    A plan of an older registry version is never returned: the version is part of the key, and
    the entries of old versions fall out as new ones arrive.
    """

    def __init__(self, compile_plan: Compiler, size: int = 1024) -> None:
        self._compile = compile_plan
        self._plans: OrderedDict[Any, OnlinePlan] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._plans)

    def get(self, snapshot: RegistrySnapshot, features: Features, full: bool, names: tuple[str, ...]) -> OnlinePlan:
        """The plan of this request shape under ``snapshot`` (compiled on first use)."""
        ref_key: Any = tuple(features) if type(features) is list else features
        key = (snapshot.version, ref_key, full, names)
        try:
            plan = self._plans.get(key)
        except TypeError:  # an unhashable reference: let resolve() explain what is wrong with it
            return self._compile(snapshot, features, full, names)
        if plan is None:
            plan = self._compile(snapshot, features, full, names)
            with self._lock:
                self._plans[key] = plan
                if len(self._plans) > self._size:
                    self._plans.popitem(last=False)
        else:
            try:  # noqa: SIM105 -- the hot path: a bare try costs nothing, suppress() a context manager
                self._plans.move_to_end(key)
            except KeyError:  # another thread evicted it meanwhile; the plan is still good
                pass
        return plan


Compiler = Callable[[RegistrySnapshot, Features, bool, tuple[str, ...]], OnlinePlan]
