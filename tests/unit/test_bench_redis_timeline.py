"""The wire-timeline bench's parts: its exchange on a real Redis, and its medians."""

from __future__ import annotations

import json
import statistics
import time
import uuid

import pytest
from bench.redis_timeline import _Wire, busy, exchange, main, summarize_timelines


def test_exchange_reads_every_reply_and_orders_its_marks(redis_address: str) -> None:
    host, port = redis_address.rsplit(":", 1)
    first, second = _Wire(host, int(port)), _Wire(host, int(port))
    key = f"timeline:{uuid.uuid4().hex}".encode()
    try:
        first.sock.sendall(b"*3\r\n$3\r\nSET\r\n$%d\r\n%b\r\n$2\r\nv1\r\n" % (len(key), key))
        assert first.replies(1)[0] > 0
        gets = b"*2\r\n$3\r\nGET\r\n$%d\r\n%b\r\n" % (len(key), key) * 40
        mark = exchange([first, second], [gets, b"*1\r\n$4\r\nPING\r\n"], [40, 1])
        # Both sockets are drained: a fresh PING on each is answered by its own PONG, not a leftover GET.
        for wire in (first, second):
            wire.sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            wire.sock.setblocking(True)
            assert wire.sock.recv(64) == b"+PONG\r\n"
            wire.sock.setblocking(False)
        assert len(mark["send_us"]) == 2 and len(mark["arrive_us"]) == 2
        assert 0 <= mark["send_us"][0] <= mark["send_us"][1] <= mark["total_us"]
        assert all(0 < t <= mark["total_us"] for t in mark["arrive_us"])
        assert mark["wake_us"] >= 0
    finally:
        first.sock.setblocking(True)
        first.sock.sendall(b"*2\r\n$3\r\nDEL\r\n$%d\r\n%b\r\n" % (len(key), key))
        first.sock.recv(64)
        first.close()
        second.close()


def test_summary_takes_medians_element_by_element() -> None:
    reads = [
        {"send_us": [1.0, 4.0], "arrive_us": [10.0, 20.0], "wake_us": 3.0, "total_us": 30.0},
        {"send_us": [2.0, 6.0], "arrive_us": [30.0, 5.0], "wake_us": 9.0, "total_us": 40.0},
        {"send_us": [3.0, 5.0], "arrive_us": [12.0, 14.0], "wake_us": 4.0, "total_us": 35.0},
    ]
    out = summarize_timelines(reads)
    assert out["send_us"] == [2.0, 5.0]
    assert out["arrive_us"] == [12.0, 14.0]
    # the last arrival is taken per read first (20, 30, 14), then its median
    assert out["last_arrival_us"] == statistics.median([20.0, 30.0, 14.0])
    assert out["wake_us"] == 4.0 and out["total_us"] == 35.0


def test_a_closed_connection_is_an_error_not_a_hang(redis_address: str) -> None:
    host, port = redis_address.rsplit(":", 1)
    wire = _Wire(host, int(port))
    try:
        wire.sock.sendall(b"*1\r\n$4\r\nQUIT\r\n")
        with pytest.raises(ConnectionError):
            wire.replies(2)  # +OK, then the server closes
    finally:
        wire.close()


def test_busy_keeps_the_thread_busy_at_least_that_long() -> None:
    started = time.perf_counter_ns()
    busy(300)
    assert time.perf_counter_ns() - started >= 300_000
    started = time.perf_counter_ns()
    busy(0)
    assert time.perf_counter_ns() - started < 300_000


def test_only_times_one_backend_alone(
    redis_address: str, redis_cluster_nodes: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--redis", redis_address, "--redis-nodes", redis_cluster_nodes, "--entities", "300", "--batch", "20"]
    main([*argv, "--reads", "6", "--warmup", "1", "--only", "redis_cluster", "--between-us", "50"])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert [line["backend"] for line in lines] == ["redis_cluster"]
    (result,) = lines
    assert result["alone"] is True and result["between_us"] == 50 and result["reads"] == 6
    assert len(result["send_us"]) == 3  # 20 random entities of 300 reach all three masters
    assert 0 < result["last_arrival_us"] <= result["total_us"]
