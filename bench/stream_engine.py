"""Throughput of the incremental stream engine (ladle.aggregation.incremental), one thread, no Kafka.

A view with eight continuous (or, with ``--slide-s``, hopping) aggregations (windows 1 h to 30 d)
over 10,000 keys; events mostly in order (2 % arrive up to 20 s late, within the 30 s watermark
delay; 0.5 % are redeliveries). The engine first restores ``--history-days`` of history (as after a
restart), then processes ``--events`` events in micro-batches of ``--batch``; with ``--udf`` the view
has a row-level udf (drops ticks with a volume above 450, about 10 %, and adds a column). Prints
events/s and the retained state. Not a test; runs in well under a minute.

    .venv/bin/python bench/stream_engine.py --batch 500 --gap-s 3600 --history-days 7

``--turn`` measures instead what one loop turn of ``ladle stream`` costs in CPU on W5's workload (the
view ``w5_price`` of bench/w5_stream.py, JSON ticks, 4 partitions, 10,000 keys, Redis online at
127.0.0.1:6379): per stage (decode, engine, the online rows, the Redis write), for ``--per-partition``
events per partition and turn, in CPU milliseconds (``time.process_time``, so a busy machine changes
them less than wall times; the Redis server's own time is not in them). The engine is called as
``ladle stream`` calls it: once per turn for all the partitions (``SourceEngine``); with
``--per-partition-engines``, once per partition (a ``PartitionEngine`` each, and a decode call per
partition, as before). As in ``ladle stream``, the heap is frozen for the garbage collector after the
set-up (``gc.freeze``). With ``--repeat N`` the measured pass runs N times (each ``--turns`` turns)
and the figures are each stage's median over the passes, with the minimum beside it: on a shared
machine the minimum moves least.

    .venv/bin/python -m bench.stream_engine --turn --per-partition 25 --repeat 5
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from ladle import Aggregation, Entity, FileSource, JsonFormat, KafkaSource, StreamFeatureView, String
from ladle.aggregation.incremental import PartitionEngine

TS = pa.timestamp("us", tz="UTC")
HOUR = timedelta(hours=1)


def drop_large_volumes(events: pd.DataFrame) -> pd.DataFrame:
    """The benchmark's udf: drops ticks with a volume above 450 and adds the notional."""
    out = events.loc[events["volume"] <= 450]
    return out.assign(notional=out["price"] * out["volume"])


def definitions(slide: timedelta | None = None, udf: bool = False) -> tuple[KafkaSource, StreamFeatureView]:
    source = KafkaSource(
        name="ticks",
        kafka_bootstrap_servers="127.0.0.1:9",
        topic="ticks",
        timestamp_field="event_timestamp",
        message_format=JsonFormat(),
        batch_source=FileSource(path="unused/", timestamp_field="event_timestamp"),
        watermark_delay_threshold=timedelta(seconds=30),
    )
    commodity = Entity(name="commodity", join_keys=["commodity_code"], value_type=String)
    aggs = [
        Aggregation("price", "last", 30 * 24 * HOUR, slide, "current_price"),
        Aggregation("price", "first", 24 * HOUR, slide, "price_first_24h"),
        Aggregation("volume", "sum", 24 * HOUR, slide, "volume_24h"),
        Aggregation("price", "mean", 7 * 24 * HOUR, slide, "ma_7d"),
        Aggregation("price", "max", 7 * 24 * HOUR, slide, "max_7d"),
        Aggregation("price", "min", 7 * 24 * HOUR, slide, "min_7d"),
        Aggregation("price", "stddev", 24 * HOUR, slide, "std_24h"),
        Aggregation("price", "count", HOUR, slide, "ticks_1h"),
    ]
    view = StreamFeatureView(
        name="price_stream",
        source=source,
        entities=[commodity],
        aggregations=aggs,
        udf=drop_large_volumes if udf else None,
    )
    return source, view


def events(n: int, keys: int, gap_us: int, start_us: int, first_offset: int, rng: np.random.Generator) -> pa.Table:
    """``n`` ticks: each key about every ``gap_us``, mostly in order, prices 0.01..10000 with 2 decimals."""
    step = gap_us / keys
    t = start_us + (np.arange(n) * step).astype(np.int64)
    late = rng.random(n) < 0.02
    t[late] -= rng.integers(0, 20_000_000, int(late.sum()))
    code = rng.integers(0, keys, n)
    redeliver = np.flatnonzero(rng.random(n) < 0.005)
    redeliver = redeliver[redeliver > 0]
    t[redeliver] = t[redeliver - 1]
    code[redeliver] = code[redeliver - 1]
    base = (code % 1000 + 1) * 10.0
    price = np.round(base * (1 + 0.01 * np.sin(t / 3.6e9 + code)) + rng.normal(0, 0.05, n), 2).clip(0.01, 10000)
    return pa.table(
        {
            "commodity_code": pa.array([f"C{c:05d}" for c in code]),
            "event_timestamp": pa.array(t).cast(TS),
            "price": pa.array(price),
            "volume": pa.array(np.round(rng.uniform(1, 500, n), 2)),
            "_kafka_partition": pa.array(np.zeros(n, np.int32)),
            "_kafka_offset": pa.array(np.arange(first_offset, first_offset + n, dtype=np.int64)),
        }
    )


class _W5Ticks:
    """JSON ticks as bench/w5_stream.py's producer writes them, round-robin over 10,000 entities at 10,000/s."""

    def __init__(self, per_batch: int) -> None:
        self.per_batch, self.began, self.sent = per_batch, time.time(), 0

    def next(self) -> list[bytes]:
        import json

        out = []
        for _ in range(self.per_batch):
            now = self.began + self.sent / 10_000
            tick = {"commodity_code": f"CMD{self.sent % 10_000:05d}", "event_timestamp": now, "price": 100.0,
                    "volume": 1.0, "sent_at": now}  # fmt: skip
            out.append(json.dumps(tick).encode())
            self.sent += 1
        return out


def _engine_turn(
    decoder: Any, engine: Any, batches: list[list[bytes]], offsets: list[int], stages: dict[str, float]
) -> list[pa.Table]:
    """Decode and run one turn's batches (one per partition), timing both; the rows to write. ``engine``:
    a ``SourceEngine`` (one decode and one engine call, as ``ladle stream``) or a ``PartitionEngine``
    per partition (one of each per partition)."""
    rows: list[pa.Table] = []
    if isinstance(engine, list):
        for p, batch in enumerate(batches):
            a = time.process_time()
            decoded = decoder.decode(batch, p, range(offsets[p], offsets[p] + len(batch)))
            b = time.process_time()
            rows.extend(engine[p].process(decoded.table).rows.values())
            stages["engine"] += time.process_time() - b
            stages["decode"] += b - a
            offsets[p] += len(batch)
        return rows
    a = time.process_time()
    parts = [p for p, batch in enumerate(batches) for _ in batch]
    at = [o for p, batch in enumerate(batches) for o in range(offsets[p], offsets[p] + len(batch))]
    decoded = decoder.decode([v for batch in batches for v in batch], parts, at)
    b = time.process_time()
    rows.extend(engine.process(decoded.table).rows.values())
    stages["engine"] += time.process_time() - b
    stages["decode"] += b - a
    for p, batch in enumerate(batches):
        offsets[p] += len(batch)
    return rows


def turn_costs(
    per_partition: int, turns: int, partitions: int = 4, split: bool = False, repeat: int = 1
) -> dict[str, float]:
    """CPU ms per loop turn and stage of W5's workload (see the module docstring, ``--turn``): each stage's
    median over ``repeat`` measured passes, and its minimum (``<stage>_min``) when ``repeat`` > 1."""
    from bench.w5_stream import _REPO_FILE, VIEW
    from ladle.aggregation.incremental import PartitionEngine, SourceEngine
    from ladle.config import load_config
    from ladle.online.redis.store import RedisOnlineStore
    from ladle.streaming.decode import Decoder
    from ladle.streaming.tables import online_rows

    names: dict[str, object] = {}
    exec(_REPO_FILE.format(servers="127.0.0.1:9", topic="w5-turn", view=VIEW), names)  # the bench's own definitions
    view = names[VIEW]
    assert isinstance(view, StreamFeatureView) and isinstance(view.source, KafkaSource)
    project = "w5turn"
    store = RedisOnlineStore(
        load_config({"project": project, "online_store": {"type": "redis", "connection_string": "127.0.0.1:6379"}})
    )
    decoder = Decoder(view.source, [view])
    engines = [PartitionEngine(view.source, [view], p) for p in range(partitions)]
    shared = SourceEngine(view.source, [view])
    offsets = [0] * partitions
    ticks = _W5Ticks(per_partition)
    stages = dict.fromkeys(("decode", "engine", "online_rows", "redis_write"), 0.0)
    passes: list[dict[str, float]] = []
    frozen = gc.isenabled()
    if frozen:  # as ladle stream does after its start (runner._freeze_heap)
        gc.collect()
        gc.freeze()
    try:
        for measured in [False] + [True] * repeat:  # a warm-up pass, then the measured ones
            for k in stages:
                stages[k] = 0.0
            for _ in range(turns):
                batches = [ticks.next() for _ in range(partitions)]
                rows = _engine_turn(decoder, engines if split else shared, batches, offsets, stages)
                a = time.process_time()
                table = online_rows(view, pa.concat_tables(rows))
                b = time.process_time()
                store.write(project, view, table)
                stages["redis_write"] += time.process_time() - b
                stages["online_rows"] += b - a
            if measured:
                passes.append({k: v * 1000 / turns for k, v in stages.items()})
    finally:
        if frozen:
            gc.unfreeze()
        store.teardown(project, [view])
        store.close()
    for p in passes:
        p["total"] = sum(p.values())
    out = {k: round(statistics.median(p[k] for p in passes), 3) for k in passes[0]}
    if repeat > 1:
        out |= {f"{k}_min": round(min(p[k] for p in passes), 3) for k in passes[0]}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--keys", type=int, default=10_000)
    parser.add_argument("--gap-s", type=float, default=3600.0, help="mean event-time gap between a key's events")
    parser.add_argument("--history-days", type=float, default=7.0)
    parser.add_argument("--slide-s", type=float, default=0.0, help="hopping windows with this slide (0: continuous)")
    parser.add_argument("--udf", action="store_true", help="a row-level udf that drops about 10 %% of the events")
    parser.add_argument("--turn", action="store_true", help="CPU ms per ladle stream loop turn on W5's workload")
    parser.add_argument("--per-partition", type=int, default=25, help="--turn: events per partition and turn")
    parser.add_argument("--turns", type=int, default=300, help="--turn: turns measured (after as many warm-up)")
    parser.add_argument("--repeat", type=int, default=1, help="--turn: measured passes (median and minimum)")
    parser.add_argument("--per-partition-engines", action="store_true",
                        help="--turn: one engine call per partition (PartitionEngine), not one per turn")  # fmt: skip
    args = parser.parse_args()
    if args.turn:
        costs = turn_costs(args.per_partition, args.turns, split=args.per_partition_engines, repeat=args.repeat)
        calls = "one engine call per partition" if args.per_partition_engines else "one engine call per turn"
        print(f"W5 loop turn, 4 partitions x {args.per_partition} events, {calls}: CPU ms per turn {costs}")
        return
    rng = np.random.default_rng(7)
    source, view = definitions(timedelta(seconds=args.slide_s) if args.slide_s else None, args.udf)
    gap = int(args.gap_s * 1e6)
    start = 1_750_000_000_000_000
    history = int(args.history_days * 86_400e6 / gap * args.keys)
    engine = PartitionEngine(source, [view], 0)
    past = events(history, args.keys, gap, start, 0, rng) if history else None
    began = time.perf_counter()
    if past is not None:
        engine.restore(past)
    restored = time.perf_counter() - began
    live = events(args.events, args.keys, gap, start + int(history * gap / args.keys), history, rng)
    batches = [live.slice(i, args.batch) for i in range(0, live.num_rows, args.batch)]
    written = 0
    cpu = time.process_time()
    began = time.perf_counter()
    for batch in batches:
        step = engine.process(batch)
        written += sum(t.num_rows for t in step.rows.values())
    elapsed = time.perf_counter() - began
    cpu = time.process_time() - cpu
    state = engine.state_bytes
    print(
        f"history {history:,} events restored in {restored:.1f} s; {args.events:,} events in batches of "
        f"{args.batch}: {args.events / elapsed:,.0f} events/s wall, {args.events / cpu:,.0f} per CPU second "
        f"({written:,} rows written); "
        f"retained {engine.retained:,} events; state arrays {state / 2**20:,.0f} MiB"
    )


if __name__ == "__main__":
    main()
