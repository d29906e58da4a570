"""One definition, two executions: the stream engine and the DuckDB batch agree at every event time.

The same random event sequences as the engine's property test (keys, times out of order,
duplicates with and without a created time, late events within and beyond the watermark, missing
values, all eight functions, continuous and hopping windows, udfs, derive, a crash with restore)
go to both, with no reference in between:

* the stream: ``PartitionEngine`` in random micro-batches; its result is the last row it wrote at
  each (key, event time);
* the batch: ``compute`` over the events the stream accepted, exactly what its offline log keeps
  (a redelivered batch's events once, as restart truncates the uncommitted file).

Every row must be present in both with equal values (floats to 1e-9); for hopping views the stream
has written the windows that ended before its final watermark, and the batch must hold exactly
those among its rows before that watermark.
"""

from __future__ import annotations

from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
from hypothesis import HealthCheck, given, note, settings

from ladle.aggregation.batch import compute

from .engine_cases import row_key, run, written
from .reference import close
from .test_engine_property import scenarios

_CON = duckdb.connect()


def _offline(steps: list[Any]) -> pa.Table:
    """The accepted events, once per offset, in offset order (what the offline log holds)."""
    accepted = pa.concat_tables([s.accepted for s in steps])
    offsets = accepted.column("_kafka_offset").to_pylist()
    first = sorted({o: i for i, o in reversed(list(enumerate(offsets)))}.values())
    table = accepted.take(pa.array(first, pa.int64()))
    return table.take(pc.sort_indices(table, [("_kafka_offset", "ascending")]))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(scenarios())
def test_stream_and_batch_agree_at_every_event_time(case: dict[str, Any]) -> None:
    note(f"arrivals {[(a.offset, a.row) for a in case['arrivals']]}; cuts {case['cuts']} crash {case['crash']}")
    steps, engine, _ = run(case["src"], case["views"], case["arrivals"], case["cuts"], case["crash"])
    events = _offline(steps)
    for view in case["views"]:
        got, _ = written(steps, view)
        rows = compute(view, events, con=_CON)
        rows = rows.append_column("__t", rows.column(view.source.timestamp_field).cast(pa.int64()))
        want = {row_key(view, r): r for r in rows.to_pylist()}
        if view.slide_interval is not None:
            assert engine.watermark_us is not None
            want = {k: r for k, r in want.items() if k[1] < engine.watermark_us}
        assert set(got) == set(want), set(got) ^ set(want)
        for ident, row in want.items():
            bad = {f: (got[ident][f], row[f]) for f in view.feature_names if not close(got[ident][f], row[f])}
            assert not bad, (view.name, ident, bad)
