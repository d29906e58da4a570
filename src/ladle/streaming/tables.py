"""Tables the stream loop shapes: the rows a view writes online, a micro-batch cut per partition.

Pure functions of Arrow tables (no I/O), used by :mod:`ladle.streaming.runner` on every loop turn
and by ``bench.stream_engine``, which times the loop's stages apart.
"""

from __future__ import annotations

import itertools

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ladle.definitions import StreamFeatureView
from ladle.streaming.decode import PARTITION
from ladle.types import EVENT_TIMESTAMP

__all__ = ["by_partition", "online_rows"]


def online_rows(view: StreamFeatureView, rows: pa.Table) -> pa.Table:
    """The engine's rows of ``view`` as the online store takes them: join keys, features, ``event_timestamp``,
    one row per key: the one the store would keep of them all (the newest event time, and of equal
    ones the last written), so a micro-batch writes each key once.

    No created timestamp: the store stamps the write time, so at an equal event time the later
    write (a re-emitted correction) wins (rule 9).
    """
    ts = view.source.timestamp_field
    names = rows.column_names
    columns: dict[str, pa.ChunkedArray | pa.Array] = {k: rows.column(k) for k in view.join_keys}
    for feature in view.feature_names:
        if feature in names:
            columns[feature] = rows.column(feature)
    columns[EVENT_TIMESTAMP] = rows.column(ts if ts in names else EVENT_TIMESTAMP)
    table = pa.table(columns)
    if table.num_rows < 2:
        return table
    if len(view.join_keys) == 1 and pc.count_distinct(table.column(view.join_keys[0])).as_py() == table.num_rows:
        return table  # every key once (the common case): nothing to choose
    order = "__ladle_order"
    ranked = table.append_column(order, pa.array(np.arange(table.num_rows, dtype=np.int64)))
    ranked = ranked.sort_by([(EVENT_TIMESTAMP, "ascending"), (order, "ascending")])
    last = ranked.group_by(view.join_keys, use_threads=False).aggregate([(order, "last")])
    if last.num_rows == table.num_rows:
        return table
    return table.take(np.sort(last.column(f"{order}_last").to_numpy()))


def by_partition(events: pa.Table) -> list[tuple[int, pa.Table]]:
    """``events`` cut into runs of one ``_kafka_partition`` (zero-copy slices, in order): the runner
    concatenates its partitions' events partition by partition, so each partition is one run."""
    parts = np.asarray(events.column(PARTITION).to_numpy(), np.int64)
    starts = np.flatnonzero(np.concatenate([[True], parts[1:] != parts[:-1]])).tolist()
    bounds = [*starts, len(parts)]
    return [(int(parts[a]), events.slice(a, b - a)) for a, b in itertools.pairwise(bounds)]
