"""Redis Cluster hash slots of Ladle's row keys, computed in bulk.

A key's slot is ``CRC16(hash tag) % 16384`` (CRC-16/XMODEM, the CRC of ``binascii.crc_hqx``), where
the hash tag is what lies between the first ``{`` and the next ``}``. Row keys are
``{<project>:<entity>}:<view id>``, so the tag is ``<project>:<entity>`` unless the entity itself
contains ``}`` (then the tag ends there; such rows take the general per-key path). The CRC of the
project prefix is computed once and continued over each entity; for a whole batch the entity bytes
are walked column by column in NumPy, so no per-row Python runs.
"""

from __future__ import annotations

import binascii
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pyarrow as pa

SLOTS = 16384
_MASK = SLOTS - 1


def _table() -> npt.NDArray[np.uint32]:
    table = np.zeros(256, dtype=np.uint32)
    for i in range(256):
        crc = i << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
        table[i] = crc & 0xFFFF
    return table


_CRC = _table()


def key_slot(key: bytes) -> int:
    """The slot of any key (Redis's hash-tag rule)."""
    start = key.find(b"{")
    if start >= 0:
        end = key.find(b"}", start + 1)
        if end > start + 1:
            key = key[start + 1 : end]
    return binascii.crc_hqx(key, 0) & _MASK


def key_slots(keys: Sequence[bytes]) -> list[int]:
    """Slots of many keys (a C CRC per key)."""
    return [key_slot(k) for k in keys]


def row_slots(project: str, entities: Sequence[bytes]) -> list[int]:
    """Slots of the row keys of ``entities`` in ``project``: the project's CRC, continued over each entity."""
    prefix = project.encode() + b":"
    if b"}" in prefix or any(b"}" in e for e in entities):
        return [key_slot(b"{" + prefix + e + b"}") for e in entities]
    start = binascii.crc_hqx(prefix, 0)
    crc = binascii.crc_hqx
    return [crc(e, start) & _MASK for e in entities]


def entity_slots(project: str, entities: pa.Array) -> npt.NDArray[np.int64]:
    """Slots of the row keys of ``entities`` (encoded entity keys, a binary array) in ``project``."""
    prefix = project.encode() + b":"
    n = len(entities)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    width = np.int64 if pa.types.is_large_binary(entities.type) else np.int32
    offsets = np.frombuffer(entities.buffers()[1], dtype=width)[entities.offset : entities.offset + n + 1]
    offsets = offsets.astype(np.int64)
    raw = entities.buffers()[2]
    data = np.frombuffer(raw, dtype=np.uint8) if raw is not None else np.zeros(0, dtype=np.uint8)
    lengths = np.diff(offsets)
    crc = np.full(n, binascii.crc_hqx(prefix, 0), dtype=np.uint32)
    starts = offsets[:-1]
    longest = int(lengths.max())
    uniform = bool((lengths == longest).all())
    # fixed-width entities (the usual case) are a (rows, width) matrix: column j is a strided view
    matrix = data[int(offsets[0]) : int(offsets[0]) + n * longest].reshape(n, longest) if uniform else None
    for j in range(longest):
        if matrix is not None:
            byte = matrix[:, j]
        else:
            active = lengths > j
            byte = data[np.where(active, starts + j, 0)] if len(data) else np.zeros(n, dtype=np.uint8)
        stepped = ((crc << 8) & 0xFFFF) ^ _CRC[((crc >> 8) ^ byte) & 0xFF]
        crc = stepped if uniform else np.where(active, stepped, crc)
    slots = (crc & _MASK).astype(np.int64)
    if b"}" in prefix or (len(data) and bool((data[int(offsets[0]) : int(offsets[-1])] == ord("}")).any())):
        # a '}' ends the hash tag early: those keys follow the general rule
        for i in range(n):
            entity = bytes(data[starts[i] : starts[i] + lengths[i]])
            if b"}" in entity or b"}" in prefix:
                slots[i] = key_slot(b"{" + prefix + entity + b"}")
    return slots
