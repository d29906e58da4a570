"""Building blocks shared by the incremental engine's tests: sources, views, arrivals → Arrow, and a driver.

Transforms are module-level functions because views version their source text. They coerce with
``pd.to_numeric`` since the reference hands them integer times and ``None`` where the engine hands
timestamps and NaN.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from ladle import Entity, Field, FileSource, Float64, Int64, JsonFormat, KafkaSource, String
from ladle.aggregation.incremental import PartitionEngine, Step
from ladle.definitions import StreamFeatureView
from ladle.definitions.stream_feature_view import Udf

from .reference import Arrival

US = timedelta(microseconds=1)
TS = pa.timestamp("us", tz="UTC")
PARTITION = 3

commodity = Entity(name="commodity", join_keys=["k"], value_type=String)
venue = Entity(name="venue", join_keys=["n"], value_type=Int64)


def source(delay_us: int = 0, created: bool = False) -> KafkaSource:
    """A Kafka source with columns k (string), n (int), ts, optional c, x, y (doubles) and tag (string)."""
    return KafkaSource(
        name="ticks",
        kafka_bootstrap_servers="127.0.0.1:9",
        topic="ticks",
        timestamp_field="ts",
        created_timestamp_column="c" if created else "",
        message_format=JsonFormat(),
        batch_source=FileSource(path="unused/", timestamp_field="ts", created_timestamp_column="c" if created else ""),
        watermark_delay_threshold=timedelta(microseconds=delay_us),
    )


def keep_small(events: pd.DataFrame) -> pd.DataFrame:
    """A filtering udf: drops events with x above 7000 (keeps missing x)."""
    x = pd.to_numeric(events["x"], errors="coerce")
    return events.loc[~(x > 7000)]


def scale_and_add(events: pd.DataFrame) -> pd.DataFrame:
    """A changing udf: doubles x and adds z = x - y."""
    out = events.copy()
    x = pd.to_numeric(events["x"], errors="coerce").astype("float64")
    out["x"] = x * 2
    out["z"] = x - pd.to_numeric(events["y"], errors="coerce").astype("float64")
    return out


def filter_and_renumber(events: pd.DataFrame) -> pd.DataFrame:
    """A udf that loses the index: drops events whose time in µs is a multiple of 3, then resets the index.

    It keeps or drops all the events of one (key, time), so they can still be matched back in order.
    """
    t = events["ts"].astype("datetime64[us, UTC]").astype("int64")
    return events.loc[t % 3 != 0].reset_index(drop=True)


def keep_small_and_renumber(events: pd.DataFrame) -> pd.DataFrame:
    """A udf that drops events with x above 7000 and loses the index (refused when duplicates split)."""
    return keep_small(events).reset_index(drop=True)


def spread(rows: pd.DataFrame) -> pd.DataFrame:
    """A derive: spread = max - min of the longest window's x."""
    out = rows.copy()
    out["spread"] = pd.to_numeric(rows["x_max_w"], errors="coerce") - pd.to_numeric(rows["x_min_w"], errors="coerce")
    return out


#: Captured once: a view built per example then never re-reads the functions' source files.
UDFS: dict[str, Udf | None] = {
    "none": None,
    "keep_small": Udf.from_function("udf", keep_small),
    "scale_and_add": Udf.from_function("udf", scale_and_add),
    "renumber": Udf.from_function("udf", filter_and_renumber),
    "keep_then_renumber": Udf.from_function("udf", keep_small_and_renumber),
}
SPREAD = Udf.from_function("derive", spread)


def view(
    src: KafkaSource,
    aggregations: Sequence[Any] = (),
    *,
    composite: bool = False,
    udf: str = "none",
    derive: bool = False,
    name: str = "v",
) -> StreamFeatureView:
    """A view over ``src`` keyed by k (or k and n)."""
    schema = None
    if derive:
        schema = [Field(name=a.name, dtype=a.output_dtype) for a in aggregations] + [
            Field(name="spread", dtype=Float64)
        ]
    elif not aggregations:
        schema = [Field(name="x", dtype=Float64), Field(name="tag", dtype=String)]
    return StreamFeatureView(
        name=name,
        source=src,
        entities=[commodity, venue] if composite else [commodity],
        aggregations=list(aggregations),
        udf=UDFS[udf],
        derive=SPREAD if derive else None,
        schema=schema,
    )


def table(arrivals: Sequence[Arrival], created: bool = False) -> pa.Table:
    """Decoded events as the runtime hands them to the engine."""
    rows = [a.row for a in arrivals]
    columns: dict[str, pa.Array] = {
        "k": pa.array([r["k"] for r in rows], pa.string()),
        "n": pa.array([r.get("n", 0) for r in rows], pa.int64()),
        "ts": pa.array([r["ts"] for r in rows], pa.int64()).cast(TS),
    }
    if created:
        columns["c"] = pa.array([r["c"] for r in rows], pa.int64()).cast(TS)
    columns["x"] = pa.array([r.get("x") for r in rows], pa.float64())
    columns["y"] = pa.array([r.get("y") for r in rows], pa.float64())
    columns["tag"] = pa.array([r.get("tag") for r in rows], pa.string())
    columns["_kafka_partition"] = pa.array([a.partition for a in arrivals], pa.int32())
    columns["_kafka_offset"] = pa.array([a.offset for a in arrivals], pa.int64())
    return pa.table(columns)


def row_key(v: StreamFeatureView, row: dict[str, Any]) -> tuple[tuple[Any, ...], int]:
    """(join key values, event time µs) of an output row read back from Arrow."""
    return tuple(row[k] for k in v.join_keys), row["__t"]


def written(
    steps: Iterable[Step], v: StreamFeatureView
) -> tuple[dict[tuple[tuple[Any, ...], int], dict[str, Any]], int]:
    """The last row written per (key, time), and how many rows were written in all."""
    out: dict[tuple[tuple[Any, ...], int], dict[str, Any]] = {}
    total = 0
    for step in steps:
        rows = step.rows.get(v.name)
        if rows is None:
            continue
        assert rows.schema.field("ts").type == TS
        for row in rows.append_column("__t", rows.column("ts").cast(pa.int64())).to_pylist():
            out[row_key(v, row)] = row
            total += 1
    return out, total


def run(
    src: KafkaSource,
    views: Sequence[StreamFeatureView],
    arrivals: Sequence[Arrival],
    cuts: Sequence[int],
    crash: tuple[int, bool] | None = None,
    seed: int = 0,
) -> tuple[list[Step], PartitionEngine, list[list[Arrival]]]:
    """Feed ``arrivals`` in micro-batches split at ``cuts``; ``crash=(batch, committed)`` restarts there.

    At a crash the batch in flight has been processed (its rows written); a new engine restores from
    the accepted events of the committed batches (in shuffled order), and an uncommitted batch is
    processed again, as Kafka redelivers it. Returns the steps, the last engine and the batches as
    processed (a redelivered batch twice).
    """
    created = bool(src.created_timestamp_column)
    bounds = [0, *sorted(set(cuts)), len(arrivals)]
    batches = [arrivals[a:b] for a, b in itertools.pairwise(bounds) if b > a]
    engine = PartitionEngine(src, views, PARTITION)
    steps: list[Step] = []
    processed: list[list[Arrival]] = []
    committed: list[pa.Table] = []
    i = 0
    while i < len(batches):
        step = engine.process(table(batches[i], created))
        steps.append(step)
        processed.append(list(batches[i]))
        if crash is not None and crash[0] == i:
            if crash[1]:
                committed.append(step.accepted)
            else:
                i -= 1  # redelivered
            engine = PartitionEngine(src, views, PARTITION)
            if committed:
                history = pa.concat_tables(committed)
                order = np.random.default_rng(seed).permutation(history.num_rows)
                engine.restore(history.take(pa.array(order)))
            crash = None
        else:
            committed.append(step.accepted)
        i += 1
    return steps, engine, processed
