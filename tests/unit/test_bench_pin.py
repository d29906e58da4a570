"""``--pin CLIENT:SERVERS`` (``bench/pin.py``): parsing, pinning the real Redis server and this process
for a block and restoring both after (also when the block fails), refusing remote servers, and
``bench.w2_paired --pin`` end to end (tiny A/A control with child processes)."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import pytest
import redis
from bench.data import ensure_ticks
from bench.pin import parse_pin, pinned, server_pids
from bench.w2_paired import main

CPUS = sorted(os.sched_getaffinity(0))
two_cpus = pytest.mark.skipif(len(CPUS) < 2, reason="PINNING NEEDS 2 CPUS: this process may use only one")


def _server(address: str) -> tuple[str, int]:
    host, port = address.rsplit(":", 1)
    return host, int(port)


@two_cpus
def test_parse_pin_accepts_cpu_lists() -> None:
    a, b = CPUS[:2]
    assert parse_pin(f"{a}:{b}") == (frozenset({a}), frozenset({b}))
    assert parse_pin(f"{b}:{a}-{a}") == (frozenset({b}), frozenset({a}))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1", "CLIENT:SERVERS"),
        ("x:0", "not a CPU list"),
        ("0:1-y", "not a CPU list"),
        ("0:0", "must differ"),
        ("0:4096", "usable CPUs"),
    ],
)
def test_parse_pin_refuses(text: str, message: str) -> None:
    if text == "0:0" and 0 not in CPUS:
        pytest.skip("CPU 0 is not usable here")
    with pytest.raises(argparse.ArgumentTypeError, match=message):
        parse_pin(text)


@pytest.mark.parametrize("host", ["10.1.2.3", "redis.example"])
def test_remote_servers_are_refused_before_any_connection(host: str) -> None:
    with pytest.raises(ValueError, match="not on loopback"):
        server_pids([(host, 6379)])


@two_cpus
def test_pinned_moves_the_client_and_the_server_and_restores_them(redis_address: str) -> None:
    server = _server(redis_address)
    with redis.Redis(host=server[0], port=server[1]) as client:
        pid = int(client.info("server")["process_id"])
    mine, theirs = os.sched_getaffinity(0), os.sched_getaffinity(pid)
    client_cpu, server_cpu = CPUS[1], CPUS[0]
    with pinned((frozenset({client_cpu}), frozenset({server_cpu})), [server]) as report:
        assert report == {"client_cpus": [client_cpu], "server_cpus": [server_cpu], "server_pids": [pid]}
        assert os.sched_getaffinity(0) == {client_cpu}
        assert os.sched_getaffinity(pid) == {server_cpu}
    assert os.sched_getaffinity(0) == mine and os.sched_getaffinity(pid) == theirs
    with pytest.raises(RuntimeError), pinned((frozenset({client_cpu}), frozenset({server_cpu})), [server]):
        raise RuntimeError("the bench failed")
    assert os.sched_getaffinity(0) == mine and os.sched_getaffinity(pid) == theirs


def test_no_pin_changes_nothing() -> None:
    mine = os.sched_getaffinity(0)
    with pinned(None, [("10.1.2.3", 6379)]) as report:  # not even looked at
        assert report is None and os.sched_getaffinity(0) == mine


@two_cpus
def test_w2_paired_reports_its_pin(redis_address: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ticks = ensure_ticks(tmp_path)
    mine = os.sched_getaffinity(0)
    argv = ["--data", str(ticks.parent), "--redis", redis_address, "--control", "--workloads", "W2a", "--processes"]
    pin = f"{CPUS[1]}:{CPUS[0]}"
    assert main([*argv, "--pairs", "3", "--warmup", "1", "--block", "3", "--resamples", "20", "--pin", pin]) == 0
    out, _ = capsys.readouterr()
    (result,) = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert result["pinned"]["client_cpus"] == [CPUS[1]] and result["pinned"]["server_cpus"] == [CPUS[0]]
    assert len(result["pinned"]["server_pids"]) == 1  # the control's two arms share one server
    assert os.sched_getaffinity(0) == mine
