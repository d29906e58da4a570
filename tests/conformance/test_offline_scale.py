"""Offline store conformance, big frames: very wide (many columns) and very long (many rows).

* Wide: an entity frame with 150 pass-through columns of mixed types (they come back with their
  values and types; a tz-aware timestamp may come back in another zone, as the same instants) and a
  view with 100 features of mixed dtypes, checked against the brute-force reference.
* Long: 100,000 entity rows over 1,000 entities against 20,000 source rows, checked against
  ``pandas.merge_asof`` (``reference_pit``): the store must scale beyond a handful of rows, and keep
  the frame's row order. Sized to stay well under 20 s on a server store.

Random data comes from fixed seeds; created times are all different, so every answer is unique.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

import numpy as np
import pyarrow as pa

from ladle import Bool, Bytes, Float32, Float64, Int32, Int64, String, UnixTimestamp
from ladle.types import DType

from .offline_backends import OfflineBuilder, SourceTable
from .offline_reference import Fact, pit_candidates
from .offline_support import T0, TS, at, make_view, pit, reference_pit, select

Draw = Callable[[random.Random], Any]

#: Pass-through column types and how to draw a value of each.
PASS_THROUGH: list[tuple[str, pa.DataType, Draw]] = [
    ("i8", pa.int8(), lambda r: r.randint(-128, 127)),
    ("i16", pa.int16(), lambda r: r.randint(-(2**15), 2**15 - 1)),
    ("i32", pa.int32(), lambda r: r.randint(-(2**31), 2**31 - 1)),
    ("i64", pa.int64(), lambda r: r.randint(-(2**63), 2**63 - 1)),
    ("u32", pa.uint32(), lambda r: r.randint(0, 2**32 - 1)),
    ("f32", pa.float32(), lambda r: r.randint(-4000, 4000) / 8),
    ("f64", pa.float64(), lambda r: r.uniform(-1e9, 1e9)),
    ("str", pa.string(), lambda r: r.choice(["", "a", "O'Neil", "é", "x\ty", "日本"]) + str(r.randint(0, 99))),
    ("bool", pa.bool_(), lambda r: r.random() < 0.5),
    ("bin", pa.binary(), lambda r: bytes(r.randint(0, 255) for _ in range(r.randint(0, 4)))),
    ("date", pa.date32(), lambda r: dt.date(2024, 1, 1) + timedelta(days=r.randint(-9000, 9000))),
    ("naive", pa.timestamp("ms"), lambda r: dt.datetime(2024, 3, 10) + timedelta(milliseconds=r.randint(0, 10**9))),
    ("tokyo", pa.timestamp("us", tz="Asia/Tokyo"), lambda r: at(r.randint(-(10**6), 10**6) / 7)),
    ("dec", pa.decimal128(12, 3), lambda r: Decimal(r.randint(-(10**11), 10**11)) / 1000),
    ("ints", pa.list_(pa.int64()), lambda r: [r.randint(-9, 9) for _ in range(r.randint(0, 3))]),
]
#: Feature dtypes of the wide view, and how to draw a value of each.
FEATURE_DTYPES: list[tuple[DType, Draw]] = [
    (Float64, lambda r: r.uniform(-1e6, 1e6)),
    (Int64, lambda r: r.randint(-(2**62), 2**62)),
    (String, lambda r: f"v{r.randint(0, 10**6)}"),
    (Bool, lambda r: r.random() < 0.5),
    (Float32, lambda r: r.randint(-1000, 1000) / 4),
    (Int32, lambda r: r.randint(-(2**31), 2**31 - 1)),
    (UnixTimestamp, lambda r: at(r.randint(-(10**5), 10**5))),
    (Bytes, lambda r: bytes([r.randint(0, 255)])),
]


def maybe(r: random.Random, draw: Draw) -> Any:
    """A drawn value, or None one time in ten."""
    return None if r.random() < 0.1 else draw(r)


def test_very_wide_frames_and_views(offline: OfflineBuilder) -> None:
    r = random.Random(15)
    features = [(f"f{i:03d}", FEATURE_DTYPES[i % len(FEATURE_DTYPES)]) for i in range(100)]
    n_source = 200
    codes = [f"C{r.randint(0, 39):02d}" for _ in range(n_source)]
    events = [float(r.randint(0, 120)) for _ in range(n_source)]  # many equal event times
    created = [float(c) for c in r.sample(range(10_000), n_source)]
    source_columns: dict[str, pa.Array] = {
        "code": pa.array(codes),
        "event_ts": pa.array([at(m) for m in events], TS),
        "created": pa.array([at(m) for m in created], TS),
    }
    for name, (dtype, draw) in features:
        source_columns[name] = pa.array([maybe(r, draw) for _ in range(n_source)], dtype.arrow)
    source = pa.table(source_columns)
    setup = offline({"wide": SourceTable(source, "event_ts", "created")})
    ttl = timedelta(minutes=30)
    view = make_view(setup.sources["wide"], "wide", features=[(n, d) for n, (d, _) in features], ttl=ttl)

    n_rows = 300
    keys = [f"C{r.randint(0, 44):02d}" for _ in range(n_rows)]  # C40-C44 have no rows
    minutes = [r.randint(-10, 130) for _ in range(n_rows)]
    entity_columns: dict[str, pa.Array] = {
        "code": pa.array(keys),
        "event_timestamp": pa.array([at(m) for m in minutes], TS),
    }
    for i in range(150):
        label, arrow_type, draw = PASS_THROUGH[i % len(PASS_THROUGH)]
        entity_columns[f"p{i:03d}_{label}"] = pa.array([maybe(r, draw) for _ in range(n_rows)], arrow_type)
    entity = pa.table(entity_columns)

    out = pit(setup.store, entity, [select(view)], full_feature_names=True)

    outputs = [f"wide__{n}" for n, _ in features]
    assert out.column_names == [*entity.column_names, *outputs]
    for name in entity.column_names[2:]:
        expected_type, got_type = entity.schema.field(name).type, out.schema.field(name).type
        if pa.types.is_timestamp(expected_type) and expected_type.tz:
            assert pa.types.is_timestamp(got_type) and got_type.tz, name  # the same instants, any zone
        else:
            assert got_type == expected_type, name
        assert out.column(name).to_pylist() == entity.column(name).to_pylist(), name
    facts = [Fact((c,), at(e), at(k)) for c, e, k in zip(codes, events, created, strict=True)]
    winners = pit_candidates(facts, [((k,), at(m)) for k, m in zip(keys, minutes, strict=True)], ttl)
    assert all(len(w) <= 1 for w in winners)
    assert sum(1 for w in winners if w) > n_rows // 3  # most rows match: the check is not vacuous
    source_rows = source.select([n for n, _ in features]).to_pylist()
    expected = [source_rows[w[0]] if w else dict.fromkeys(n for n, _ in features) for w in winners]
    got = out.select(outputs).rename_columns([n for n, _ in features]).to_pylist()
    assert got == expected
    for name, (dtype, _) in features:
        assert out.schema.field(f"wide__{name}").type == dtype.arrow, name


def minutes_array(minutes: np.ndarray) -> pa.Array:
    """``at(m)`` for whole minutes ``m``, as timestamp[us, UTC], built without Python datetimes."""
    t0 = int(T0.timestamp()) * 1_000_000
    return pa.array(t0 + minutes.astype(np.int64) * 60_000_000, pa.int64()).cast(TS)


def test_very_long_entity_frame(offline: OfflineBuilder) -> None:
    rng = np.random.default_rng(15)
    n_entities, per_entity, n_rows = 1_000, 20, 100_000
    codes = np.repeat([f"E{k:04d}" for k in range(n_entities)], per_entity)
    n_source = len(codes)
    source = pa.table(
        {
            "code": pa.array(codes),
            "event_ts": minutes_array(rng.integers(0, 600, n_source)),  # about two rows a minute per entity
            "created": minutes_array(rng.permutation(n_source)),
            "price": pa.array(np.arange(n_source, dtype=np.float64)),
        }
    )
    setup = offline({"ticks": SourceTable(source, "event_ts", "created")})
    ttl = timedelta(minutes=60)
    view = make_view(setup.sources["ticks"], "ticks", ttl=ttl)
    entity = pa.table(
        {
            "code": pa.array([f"E{k:04d}" for k in rng.integers(0, n_entities + 50, n_rows)]),
            "event_timestamp": minutes_array(rng.integers(-10, 620, n_rows)),
            "row": pa.array(np.arange(n_rows, dtype=np.int64)),
        }
    )
    out = pit(setup.store, entity, [select(view)])
    assert out.num_rows == n_rows
    assert out.column("row").to_pylist() == list(range(n_rows))  # the frame's order
    assert out.column("code").equals(entity.column("code"))
    expected = reference_pit(entity.to_pandas(), source.to_pandas(), ["code"], "price", ttl, "created")
    assert sum(v is not None for v in expected) > n_rows // 2
    assert out.column("price").to_pylist() == expected
