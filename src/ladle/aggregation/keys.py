"""Join key values to dense slot numbers, vectorized over a micro-batch.

A pandas index of the keys seen (a ``MultiIndex`` for composite keys) answers a whole batch with
one ``get_indexer`` call; new keys get the next slots. Keys are held as Python objects: an index of
Arrow-backed strings would be converted again on every lookup. ``table`` keeps the key values per
slot as Arrow, to write them back into output rows with their input types.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa

from ladle.errors import SchemaMismatchError

I64 = npt.NDArray[np.int64]


class KeyIndex:
    """Join key values ↔ dense slot numbers (0, 1, 2, … in order of first appearance)."""

    def __init__(self, names: list[str]) -> None:
        self.names = names
        self._index: pd.Index | None = None
        self.table: pa.Table | None = None

    def slots(self, events: pa.Table) -> I64:
        """The slot of each event's key, adding slots for new keys."""
        probe = self._probe(events)
        if self._index is None:
            found = np.full(len(probe), -1, np.int64)
        else:
            found = np.asarray(self._index.get_indexer(probe), dtype=np.int64)
        new = found < 0
        if new.any():
            first = np.flatnonzero(new)[~probe[new].duplicated()]
            fresh = events.select(self.names).take(pa.array(first))
            self._index = probe[first] if self._index is None else self._index.append(probe[first])
            self.table = fresh if self.table is None else pa.concat_tables([self.table, fresh]).combine_chunks()
            found = np.asarray(self._index.get_indexer(probe), dtype=np.int64)
        return found

    def _probe(self, events: pa.Table) -> pd.Index:
        if any(events.column(n).null_count for n in self.names):
            raise SchemaMismatchError(f"join keys {self.names} have null values; decoding dead-letters such events")
        # object arrays: an index of Arrow-backed strings would be converted again on every lookup
        columns = [np.asarray(events.column(n).to_numpy(zero_copy_only=False), dtype=object) for n in self.names]
        if len(columns) == 1:
            single: pd.Index = pd.Index(columns[0], dtype=object)
            return single
        probe: pd.Index = pd.MultiIndex.from_arrays(columns, names=self.names)
        return probe

    @property
    def count(self) -> int:
        """The number of keys seen."""
        return 0 if self._index is None else len(self._index)
