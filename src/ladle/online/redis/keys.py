"""Redis key layout: one string key per (project, entity, view), hash-tagged on project + entity.

::

    {<project>:<entity>}:<view id>        a row (value: a stamped row, ladle.online.codec.stamped)
    {<project>:}:_meta                    hash: view:<id> → view name, layout:<fp> → feature layout

``<view id>`` is the first 12 hex digits of BLAKE2b(view name); the ``_meta`` hash records which name
owns an id so a collision is detected instead of mixing two views. ``<entity>`` is the entity's
readable text form (:func:`ladle.online.keys.text_entity_keys`). The hash tag (between ``{`` and the
first ``}``) puts every view of one entity in one Redis Cluster slot. See docs/redis.md for the
reasons. Framing keys for the wire is :mod:`.resp`'s job.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc

VIEW_ID_HEX = 12
META_SUFFIX = b"_meta"


def view_id(view_name: str) -> bytes:
    """The short, stable id of a view inside keys (12 hex digits of BLAKE2b of its name)."""
    return hashlib.blake2b(view_name.encode(), digest_size=VIEW_ID_HEX // 2).hexdigest().encode()


def key_prefix(project: str) -> bytes:
    """``{<project>:``, the start of every key of a project."""
    return b"{" + project.encode() + b":"


def key_suffix(vid: bytes) -> bytes:
    """``}:<view id>``, the end of every row key of a view."""
    return b"}:" + vid


def meta_key(project: str) -> bytes:
    """The project's ``_meta`` hash (view ids → names, layout fingerprints → layouts)."""
    return key_prefix(project) + b"}:" + META_SUFFIX


def view_pattern(project: str, vid: bytes) -> bytes:
    """SCAN pattern of one view's rows (fixed-length ids make the suffix unambiguous)."""
    return key_prefix(project) + b"*" + key_suffix(vid)


def project_pattern(project: str) -> bytes:
    """SCAN pattern of every key of a project (``:`` cannot occur in project names)."""
    return key_prefix(project) + b"*"


def row_keys_py(project: str, vid: bytes, entities: Sequence[bytes]) -> list[bytes]:
    """Full row keys of one view for encoded entities."""
    pre, suf = key_prefix(project), key_suffix(vid)
    return [pre + e + suf for e in entities]


def row_keys_arrow(project: str, vid: bytes, entities: pa.Array) -> pa.Array:
    """Full row keys of one view for an array of encoded entities."""
    return pc.binary_join_element_wise(key_prefix(project), entities, key_suffix(vid), b"")
