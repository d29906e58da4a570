"""The online store protocol, in domain types (Arrow in, Python lists out; never wire protos).

A backend is a class with a ``config_class`` (a pydantic model with a literal ``type``), built as
``Backend(config: RepoConfig)``, registered under the ``ladle.online_stores`` entry point group.

Rules every backend keeps (checked by ``tests/conformance``):

* ``write`` keeps only the newest event per (project, view, entity): a row whose event timestamp is
  older than the stored one is dropped, atomically on the server side, whatever order writes arrive
  in; an equal event timestamp with a newer-or-equal created timestamp replaces.
* ``read`` returns one :class:`ViewRows` per :class:`ReadRequest`, in order, with ``None`` event
  timestamps for entities that have no row. TTL is *not* applied by stores; retrieval applies it.
* ``read`` over several views and entities costs one round trip where the backend allows it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, runtime_checkable

import pyarrow as pa

from ladle.config import RepoConfig, StrictModel
from ladle.definitions import FeatureView


@dataclass(frozen=True)
class ReadRequest:
    """Read ``features`` of ``view`` for N entities.

    ``keys`` maps each of the view's join keys to N values, already of the join key's Python type
    (``str``, ``int`` or ``bytes``).
    """

    view: FeatureView
    features: Sequence[str]
    keys: Mapping[str, Sequence[Any]]


@dataclass
class ViewRows:
    """What a store holds for N entities of one view.

    ``event_ts[i]`` is the stored event time in microseconds since the epoch (UTC) or ``None`` when
    the entity has no row; ``values[feature][i]`` is a Python value (``None`` for null or missing):
    ``float``, ``int``, ``str``, ``bytes``, ``bool``, ``datetime`` (UTC) for UnixTimestamp, or a list.
    """

    event_ts: list[int | None]
    values: dict[str, list[Any]]
    #: When every row was decoded from fixed-width records of one layout (the usual read), the
    #: records themselves: ``(layout, buffer, offset)``, N records of the
    #: :class:`~ladle.online.codec.stamped.ViewLayout` at byte ``offset`` of ``buffer`` (shared by
    #: the views of one read, never copied). Consumers that want columns (feature logging) decode
    #: them with NumPy instead of converting the Python values; None otherwise.
    raw: tuple[Any, bytes, int] | None = None


@runtime_checkable
class OnlineStore(Protocol):
    """Latest feature values per entity, for serving."""

    config_class: ClassVar[type[StrictModel]]

    def write(self, project: str, view: FeatureView, rows: pa.Table) -> int:
        """Upsert rows, newest event wins; return how many rows were written (not dropped as older).

        ``rows`` has the view's join key columns, some or all of its feature columns,
        ``event_timestamp`` (timestamp[us, UTC]) and optionally ``created_timestamp``.
        Features missing from ``rows`` are written as null.
        """
        ...

    def read(self, project: str, requests: Sequence[ReadRequest]) -> list[ViewRows]:
        """Read several views for several entities, one result per request."""
        ...

    def update(self, project: str, keep: Sequence[FeatureView], delete: Sequence[FeatureView]) -> None:
        """Prepare storage for ``keep`` and drop the data of ``delete`` (called by apply)."""
        ...

    def delete_view(self, project: str, view: FeatureView) -> None:
        """Delete every stored row of one view."""
        ...

    def teardown(self, project: str, views: Sequence[FeatureView]) -> None:
        """Remove everything this project stored (and nothing of other projects)."""
        ...

    def ping(self) -> None:
        """Raise :class:`~ladle.errors.BackendUnavailableError` if the store cannot be reached."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


@runtime_checkable
class BatchWriter(Protocol):
    """Optional capability: ingest a stream of batches of one view (materialization) faster than
    one ``write`` per batch, with the same newest-event-wins rule. If a batch (or the stream)
    fails, earlier batches may or may not stay written; the caller runs it again."""

    def write_batches(self, project: str, view: FeatureView, batches: Iterable[pa.Table]) -> int:
        """Write every batch; return the rows written (not dropped as older)."""
        ...


@runtime_checkable
class EntityEraser(Protocol):
    """Optional capability: delete the rows of one entity from one view (``ladle erase``).

    ``keys`` maps some or all of the view's join keys to one value each; a row matches when its
    entity has those values (join keys left out match anything: every venue of one commodity).
    """

    def erase_entity(self, project: str, view: FeatureView, keys: Mapping[str, Any], dry_run: bool = False) -> int:
        """Delete the matching rows (with ``dry_run``, only count them); return how many."""
        ...


def open_online_store(config: RepoConfig) -> OnlineStore:
    """Build the online store named by ``config.online_store.type``."""
    from ladle.plugins import load_backend

    backend = load_backend("ladle.online_stores", config.online_store.type)
    store: OnlineStore = backend(config)
    return store
