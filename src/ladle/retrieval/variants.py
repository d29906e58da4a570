"""A/B splits: which arm of a split feature service serves each entity, and the read that follows.

A split service (``FeatureService(name, variants={arm: (service, weight)})``) sends each entity to
one arm by a keyed hash of its join-key values: BLAKE2b-64 keyed with the split service's name,
over the sorted join-key columns every arm's service shares. The hash is taken of a canonical
encoding (type tag, then the value), never Python's ``hash``, so the same entity lands in the same
arm in every process, after restarts, and through the SDK, REST and gRPC alike. The hash, as a
fraction of 2**64, falls into the arms' cumulative weights in the order the arms are declared.

Each row of a request is assigned on its own; rows are grouped by arm, each group is read with its
arm's (cached) plan, and the answers go back in request order. When rows went to different arms
whose services return different columns, the response carries the union of the columns, and a
column an arm does not serve is ``NOT_FOUND`` for that arm's rows.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd

from ladle.definitions.feature_service import FeatureService, parse_pinned
from ladle.errors import EntityKeyError, RequestError
from ladle.registry.base import RegistrySnapshot
from ladle.retrieval.plan import Features, OnlinePlan
from ladle.retrieval.response import OnlineResponse
from ladle.types import FieldStatus


class Retriever(Protocol):
    """What a split read needs from :class:`~ladle.retrieval.online.OnlineRetriever`."""

    def plan(self, snapshot: RegistrySnapshot, features: Features, full: bool, names: tuple[str, ...]) -> OnlinePlan:
        """The (cached) plan of a request shape."""
        ...

    def read(self, plan: OnlinePlan, entities: Mapping[str, Sequence[Any]], rows: int) -> OnlineResponse:
        """Run ``plan`` for ``rows`` entity rows."""
        ...


_NOT_FOUND = int(FieldStatus.NOT_FOUND)
_PRESENT = int(FieldStatus.PRESENT)
_SCALE = float(2**64)


#: Rows up to which a mixed split read lists each row's arm in :func:`variant_label`.
LABEL_ROWS = 256


def variant_label(response: OnlineResponse) -> str | None:
    """What ``X-Ladle-Variant`` / gRPC ``ladle-variant`` say: the arm that served every row; if rows
    went to different arms, one arm per row, comma-separated (``mixed`` past ``LABEL_ROWS`` rows, to
    keep the header small); None without a split."""
    if response.variants is None:
        return None
    if response.variant is not None:
        return response.variant
    return ",".join(response.variants) if len(response.variants) <= LABEL_ROWS else "mixed"


def split_of(snapshot: RegistrySnapshot, features: object) -> FeatureService | None:
    """The split service ``features`` names (a name or a FeatureService), or None if it is no split."""
    if isinstance(features, FeatureService):
        return features if features.variants else None
    if isinstance(features, str):
        service = snapshot.feature_services.get(features)
        return service if service is not None and service.variants else None
    return None


def arm_service(snapshot: RegistrySnapshot, target: str) -> FeatureService | str:
    """What an arm reads: the service's name (latest version), or the stored version it pins."""
    name, version = parse_pinned(target)
    if version is None:
        snapshot.feature_service(name)  # FeatureServiceNotFoundError
        return name
    return snapshot.feature_service_version(name, version)


def _name(service: FeatureService | str) -> str:
    return service if isinstance(service, str) else service.name


def require_split(snapshot: RegistrySnapshot, service: FeatureService | str) -> FeatureService:
    """The split service ``service`` names; RequestError if it is not a split."""
    found = snapshot.feature_service(service) if isinstance(service, str) else service
    if not found.variants:
        raise RequestError(f"feature service '{found.name}' is not a split: it has no variants")
    return found


def arm_definition(snapshot: RegistrySnapshot, service: FeatureService, arm: str) -> FeatureService:
    """The feature service one arm of ``service`` serves (the stored version for a pinned arm)."""
    if arm not in service.variants:
        raise RequestError(f"split service '{service.name}' has no variant '{arm}'; it has {sorted(service.variants)}")
    target = arm_service(snapshot, service.variants[arm][0])
    return snapshot.feature_service(target) if isinstance(target, str) else target


def entity_key(values: Sequence[Any]) -> bytes:
    """The canonical bytes of one entity's join-key values (in sorted join-key order)."""
    parts = []
    for value in values:
        if isinstance(value, bool | np.bool_):
            raise EntityKeyError(f"join key values must be str, int or bytes, got {value!r}")
        if isinstance(value, int | np.integer):
            parts.append(b"i" + str(int(value)).encode())
        elif isinstance(value, str):
            parts.append(b"s" + value.encode())
        elif isinstance(value, bytes | bytearray | memoryview):
            parts.append(b"b" + bytes(value))
        else:
            raise EntityKeyError(f"join key values must be str, int or bytes, got {value!r}")
    # Length prefixes keep ("ab", "c") and ("a", "bc") apart.
    return b"".join(len(p).to_bytes(4, "big") + p for p in parts)


@dataclass(frozen=True)
class Splitter:
    """The arm assignment of one split service: arms, cumulative weights, hash key."""

    service: str
    arms: tuple[str, ...]
    targets: tuple[str, ...]
    bounds: tuple[float, ...]  # cumulative weights, the last one 1.0

    @classmethod
    def of(cls, service: FeatureService) -> Splitter:
        """The splitter of a split service."""
        arms = tuple(service.variants)
        targets = tuple(service.variants[a][0] for a in arms)
        bounds = tuple(itertools.accumulate(service.variants[a][1] for a in arms))
        return cls(service.name, arms, targets, (*bounds[:-1], 1.0))

    def fraction(self, values: Sequence[Any]) -> float:
        """Where one entity falls in [0, 1): its keyed hash over 2**64."""
        digest = hashlib.blake2b(entity_key(values), digest_size=8, key=self.service.encode()[:64]).digest()
        return int.from_bytes(digest, "big") / _SCALE

    def arm(self, values: Sequence[Any]) -> str:
        """The arm of one entity (its join-key values in sorted join-key order)."""
        index = bisect.bisect_right(self.bounds, self.fraction(values))
        return self.arms[min(index, len(self.arms) - 1)]

    def assign(self, columns: Sequence[Sequence[Any]], rows: int) -> list[str]:
        """The arm of each of ``rows`` entities, from their join-key columns (sorted by name)."""
        if not columns:
            raise RequestError(f"split service '{self.service}': its arms share no join key to split on")
        return [self.arm(values) for values in zip(*columns, strict=True)] if rows else []


def split_keys(plans: Sequence[OnlinePlan]) -> list[str]:
    """The join-key columns a split hashes: those every arm's plan reads, sorted by name."""
    shared = set(plans[0].key_columns)
    for plan in plans[1:]:
        shared &= set(plan.key_columns)
    return sorted(shared)


@dataclass(frozen=True)
class ArmRead:
    """One arm's share of a split read: its plan, the rows it answered, and its answer."""

    arm: str
    plan: OnlinePlan
    rows: list[int]
    response: OnlineResponse


def read_split(
    retriever: Retriever,
    snapshot: RegistrySnapshot,
    service: FeatureService,
    entities: Mapping[str, Sequence[Any]],
    rows: int,
    full_feature_names: bool,
) -> tuple[OnlineResponse, list[ArmRead]]:
    """Read ``rows`` entity rows through a split service: each row from its own arm (module docstring)."""
    splitter = Splitter.of(service)
    names = tuple(entities)
    services = {arm: arm_service(snapshot, target) for arm, target in zip(splitter.arms, splitter.targets, strict=True)}
    plans = {arm: retriever.plan(snapshot, svc, full_feature_names, names) for arm, svc in services.items()}
    keys = split_keys(list(plans.values()))
    assigned = splitter.assign([entities[k] for k in keys], rows)
    groups: dict[str, list[int]] = {}
    for i, arm in enumerate(assigned):
        groups.setdefault(arm, []).append(i)
    if len(groups) <= 1:
        arm = assigned[0] if assigned else splitter.arms[0]
        response = retriever.read(plans[arm], entities, rows)
        response.variant, response.variants = arm, assigned
        response.arms = [(arm, _name(services[arm]), response)]
        return response, [ArmRead(arm, plans[arm], list(range(rows)), response)]
    reads = []
    for arm in splitter.arms:
        if arm in groups:
            index = groups[arm]
            subset = {k: [col[i] for i in index] for k, col in entities.items()}
            answer = retriever.read(plans[arm], subset, len(index))
            answer.variant = arm
            reads.append(ArmRead(arm, plans[arm], index, answer))
    merged = _merge(reads, entities, rows)
    merged.variants = assigned
    merged.arms = [(r.arm, _name(services[r.arm]), r.response) for r in reads]
    return merged, reads


def _merge(reads: Sequence[ArmRead], entities: Mapping[str, Sequence[Any]], rows: int) -> OnlineResponse:
    names = list(dict.fromkeys(n for r in reads for n in r.response.feature_names))
    values: list[list[Any]] = []
    statuses: list[list[int]] = []
    stamps: list[list[int]] = []
    for name in names:
        if name in entities:  # a join-key column: the request's own values
            values.append(list(entities[name]))
            statuses.append([_PRESENT] * rows)
            stamps.append([0] * rows)
            continue
        col: list[Any] = [None] * rows
        status = [_NOT_FOUND] * rows
        stamp = [0] * rows
        for read in reads:
            response = read.response
            try:
                j = response.feature_names.index(name)
            except ValueError:
                continue
            for src, dst in enumerate(read.rows):
                col[dst] = response.values[j][src]
                status[dst] = response.statuses[j][src]
                stamp[dst] = response.event_timestamps[j][src]
        values.append(col)
        statuses.append(status)
        stamps.append(stamp)
    return OnlineResponse(names, values, statuses, stamps)


def assign_variants(
    retriever: Retriever, snapshot: RegistrySnapshot, service: FeatureService, entity_df: pd.DataFrame
) -> pd.Series:
    """The arm of each row of ``entity_df`` (a training or entity frame), exactly as serving assigns it.

    This rebuilds each arm's entity rows without the feature logs: ``df[assign_variants(...) == "treatment"]``.
    """
    names = tuple(str(c) for c in entity_df.columns)
    plans = [
        retriever.plan(snapshot, arm_service(snapshot, target), False, names)
        for target in (t for t, _ in service.variants.values())
    ]
    keys = split_keys(plans)
    splitter = Splitter.of(service)
    arms = splitter.assign([entity_df[k].tolist() for k in keys], len(entity_df))
    return pd.Series(arms, index=entity_df.index, name="variant", dtype="object")
