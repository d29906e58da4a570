"""Join key values to dense slot numbers, over a micro-batch.

A dict from key value (a tuple for composite keys) to slot answers a batch with one comprehension:
for the batch sizes a stream sees (tens to thousands of events) that is cheaper than any vectorized
index, whose fixed cost per call dominated small batches, and adding keys costs only the new ones
(a pandas index had to be rebuilt). ``table`` keeps the key values per slot as Arrow, to write them
back into output rows with their input types; it is assembled from the new keys' rows on demand.

A key is also scoped by its Kafka partition (one index serves every partition of a source, each
partition keeping its own state): ``slots`` takes each event's partition, and ``partitions`` gives
each slot's.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from ladle.errors import SchemaMismatchError

I64 = npt.NDArray[np.int64]


class KeyIndex:
    """(partition, join key values) ↔ dense slot numbers (0, 1, 2, … in order of first appearance)."""

    def __init__(self, names: list[str]) -> None:
        self.names = names
        self._slots: dict[object, int] = {}
        self._table: pa.Table | None = None
        self._columns: dict[str, pa.Array] = {}
        self._fresh: list[pa.Table] = []
        self._partitions: list[int] = []
        self._partition_array: I64 = np.zeros(0, np.int64)

    def slots(self, events: pa.Table, partitions: I64) -> I64:
        """The slot of each event's key in its partition (``partitions``, one per event), adding slots
        for new keys."""
        if any(events.column(n).null_count for n in self.names):
            raise SchemaMismatchError(f"join keys {self.names} have null values; decoding dead-letters such events")
        if len(self.names) == 1:
            plain: list[object] = events.column(self.names[0]).to_pylist()
        else:
            plain = list(zip(*(events.column(n).to_pylist() for n in self.names), strict=True))
        values: list[object] = list(zip(partitions.tolist(), plain, strict=True))
        known = self._slots
        found = np.array([known.get(v, -1) for v in values], dtype=np.int64)
        missing = np.flatnonzero(found < 0)
        if len(missing):
            first: list[int] = []
            for i in missing.tolist():
                value = values[i]
                slot = known.get(value)
                if slot is None:
                    slot = known[value] = len(known)
                    first.append(i)
                    self._partitions.append(int(partitions[i]))
                found[i] = slot
            self._fresh.append(events.select(self.names).take(pa.array(first, pa.int64())))
        return found

    @property
    def table(self) -> pa.Table | None:
        """The key values of every slot, in slot order."""
        if self._fresh:
            parts = ([self._table] if self._table is not None else []) + self._fresh
            self._table = pa.concat_tables(parts).combine_chunks()
            self._fresh = []
            self._columns = {}
        return self._table

    @property
    def columns(self) -> dict[str, pa.Array]:
        """The key values of every slot, in slot order, per key column (one contiguous array each)."""
        table = self.table
        if not self._columns and table is not None:
            self._columns = {name: table.column(name).combine_chunks() for name in self.names}
        return self._columns

    @property
    def partitions(self) -> I64:
        """The partition of every slot, in slot order."""
        if len(self._partition_array) != len(self._partitions):
            self._partition_array = np.array(self._partitions, np.int64)
        return self._partition_array

    @property
    def count(self) -> int:
        """The number of keys seen."""
        return len(self._slots)
