"""Rule 1 (decoding): JSON and Avro messages → the engine's input table, or dead letters with a reason."""

from __future__ import annotations

import io
import json
import struct
from datetime import UTC, datetime, timedelta

import fastavro
import orjson
import pyarrow as pa
import pytest

from ladle import Aggregation, Entity, Field, FileSource, Float64, Int64, KafkaSource, StreamFeatureView, String
from ladle.definitions.formats import AvroFormat, JsonFormat
from ladle.errors import DefinitionError
from ladle.streaming.decode import OFFSET, PARTITION, Decoder

TS = pa.timestamp("us", tz="UTC")
commodity = Entity(name="commodity", join_keys=["commodity_code"], value_type=String)


def source(fmt: JsonFormat | AvroFormat, created: str = "", mapping: dict[str, str] | None = None) -> KafkaSource:
    return KafkaSource(
        name="ticks",
        kafka_bootstrap_servers="127.0.0.1:1",
        topic="ticks",
        timestamp_field="event_timestamp",
        created_timestamp_column=created,
        field_mapping=mapping,
        message_format=fmt,
        batch_source=FileSource(
            path="data/ticks/", timestamp_field="event_timestamp", created_timestamp_column=created
        ),
    )


def plain_view(src: KafkaSource) -> StreamFeatureView:
    return StreamFeatureView(
        name="ticks_view",
        source=src,
        entities=[commodity],
        schema=[Field(name="commodity_code", dtype=String), Field(name="price", dtype=Float64),
                Field(name="volume", dtype=Int64)],
    )  # fmt: skip


def decode(decoder: Decoder, *values: bytes | None) -> tuple[pa.Table, list[tuple[int, str, str]]]:
    out = decoder.decode(list(values), 3, [100 + i for i in range(len(values))])
    return out.table, [(r.index, r.reason, r.detail) for r in out.rejected]


def j(obj: object) -> bytes:
    return orjson.dumps(obj)


def us(text: str) -> int:
    stamp = datetime.fromisoformat(text)
    stamp = stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)
    return (stamp - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def test_json_without_schema_reads_the_views_columns_in_offset_order() -> None:
    dec = Decoder(source(JsonFormat()), [plain_view(source(JsonFormat()))])
    table, rejected = decode(
        dec,
        j({"commodity_code": "gold", "event_timestamp": "2024-01-02T03:04:05.123456Z", "price": 1, "volume": 7,
           "extra": "dropped"}),
        j({"commodity_code": "oil", "event_timestamp": 1704164645.5, "price": 2.5}),
        j({"commodity_code": "gas", "event_timestamp": "2024-01-02 03:04:05+02:00", "price": None, "volume": 1}),
        j({"commodity_code": "tin", "event_timestamp": "2024-01-02T03:04:05", "price": 3.0, "volume": 2}),
    )  # fmt: skip
    assert rejected == []
    assert table.schema.field("event_timestamp").type == TS
    assert table.schema.field(PARTITION).type == pa.int32() and table.schema.field(OFFSET).type == pa.int64()
    assert "extra" not in table.column_names
    rows = table.to_pylist()
    assert [r["commodity_code"] for r in rows] == ["gold", "oil", "gas", "tin"]
    assert [r[OFFSET] for r in rows] == [100, 101, 102, 103] and {r[PARTITION] for r in rows} == {3}
    stamps = table.column("event_timestamp").cast(pa.int64()).to_pylist()
    assert stamps == [
        us("2024-01-02T03:04:05.123456+00:00"),
        1704164645_500000,
        us("2024-01-02T01:04:05+00:00"),
        us("2024-01-02T03:04:05+00:00"),  # no offset: UTC
    ]
    assert [r["price"] for r in rows] == [1.0, 2.5, None, 3.0]
    assert [r["volume"] for r in rows] == [7, None, 1, 2]


def test_undecodable_and_schema_violations_are_rejected_with_reasons() -> None:
    dec = Decoder(source(JsonFormat()), [plain_view(source(JsonFormat()))])
    good = {"commodity_code": "gold", "event_timestamp": "2024-01-02T00:00:00Z", "price": 1.0, "volume": 1}
    table, rejected = decode(
        dec,
        b"{not json",
        j([1, 2]),
        None,
        j({**good, "commodity_code": None}),
        j({k: v for k, v in good.items() if k != "commodity_code"}),
        j({**good, "event_timestamp": None}),
        j({**good, "event_timestamp": "yesterday"}),
        j({**good, "price": "cheap"}),
        j({**good, "volume": 1.5}),
        j({**good, "volume": True}),
        j({**good, "commodity_code": 12}),
        j(good),
    )
    reasons = [(i, reason) for i, reason, _ in rejected]
    assert reasons == [(0, "undecodable"), (1, "undecodable"), (2, "undecodable")] + [
        (i, "schema") for i in range(3, 11)
    ]
    details = {i: d for i, _, d in rejected}
    assert "commodity_code" in details[3] and "commodity_code" in details[4]
    assert "event_timestamp" in details[6] and "price" in details[7] and "volume" in details[8]
    assert table[OFFSET].to_pylist() == [111]


def test_messages_of_several_partitions_keep_their_partition_and_offset() -> None:
    """The stream loop decodes a turn's messages of all partitions in one call, one partition each."""
    dec = Decoder(source(JsonFormat()), [plain_view(source(JsonFormat()))])
    good = {"commodity_code": "gold", "event_timestamp": "2024-01-02T00:00:00Z", "price": 1.0, "volume": 1}
    values = [j(good), b"{not json", j({**good, "price": "cheap"}), j(good), j(good)]
    out = dec.decode(values, [0, 0, 2, 2, 5], [10, 11, 40, 41, 7])
    assert [(r.index, r.reason) for r in out.rejected] == [(1, "undecodable"), (2, "schema")]
    assert out.table[PARTITION].to_pylist() == [0, 2, 5]
    assert out.table[OFFSET].to_pylist() == [10, 41, 7]


def test_json_schema_declares_the_columns_and_field_mapping_renames() -> None:
    fmt = JsonFormat("code string, ts timestamp, price double, n bigint")
    src = source(fmt, mapping={"code": "commodity_code", "ts": "event_timestamp"})
    view = StreamFeatureView(
        name="v", source=src, entities=[commodity],
        aggregations=[Aggregation(column="price", function="sum", time_window=timedelta(hours=1))],
    )  # fmt: skip
    dec = Decoder(src, [view])
    table, rejected = decode(
        dec,
        j({"code": "gold", "ts": 1700000000, "price": 1.5, "n": 3, "other": 1}),
        j({"code": "gold", "ts": 1700000001, "price": 2, "n": 2.5}),
    )
    assert table.column_names == ["commodity_code", "event_timestamp", "price", "n", PARTITION, OFFSET]
    assert table.schema.field("n").type == pa.int64()
    assert table.to_pylist()[0]["price"] == 1.5
    assert [(i, r) for i, r, _ in rejected] == [(1, "schema")]


def test_a_declared_format_must_name_the_keys_and_time() -> None:
    src = source(JsonFormat("price double, event_timestamp timestamp"))
    with pytest.raises(DefinitionError, match="commodity_code"):
        Decoder(src, [plain_view(src)])
    bad_ts = source(JsonFormat("commodity_code string, event_timestamp string"))
    with pytest.raises(DefinitionError, match="timestamp"):
        Decoder(bad_ts, [plain_view(bad_ts)])


AVRO_SCHEMA = {
    "type": "record",
    "name": "Tick",
    "fields": [
        {"name": "commodity_code", "type": ["null", "string"]},
        {"name": "event_timestamp", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "created", "type": ["null", {"type": "long", "logicalType": "timestamp-micros"}]},
        {"name": "price", "type": ["null", "double"]},
    ],
}


def avro(record: dict[str, object], framed: bool = False) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(AVRO_SCHEMA), record)
    body = buf.getvalue()
    return (b"\x00" + struct.pack(">I", 42) + body) if framed else body


def test_avro_schemaless_and_confluent_framing() -> None:
    src = source(AvroFormat(json.dumps(AVRO_SCHEMA)), created="created")
    dec = Decoder(src, [plain_view(src)])
    when = datetime(2024, 5, 6, 7, 8, 9, 123000, tzinfo=UTC)
    created = datetime(2024, 5, 6, 7, 8, 10, 654321, tzinfo=UTC)
    table, rejected = decode(
        dec,
        avro({"commodity_code": "gold", "event_timestamp": when, "created": created, "price": 1.25}),
        avro({"commodity_code": "oil", "event_timestamp": when, "created": created, "price": None}, framed=True),
        avro({"commodity_code": None, "event_timestamp": when, "created": created, "price": 1.0}),
        avro({"commodity_code": "gas", "event_timestamp": when, "created": None, "price": 1.0}),
        b"\x02\x99",
    )
    assert [(i, r) for i, r, _ in rejected] == [(2, "schema"), (3, "schema"), (4, "undecodable")]
    rows = table.to_pylist()
    assert [r["commodity_code"] for r in rows] == ["gold", "oil"]
    assert rows[0]["event_timestamp"] == when and rows[0]["created"] == created
    assert rows[1]["price"] is None
