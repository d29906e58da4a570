"""The paired W2 bench end to end against the real Redis, tiny sizes: the A/A control with each arm's
store in its own child process (``--processes``) and in this process, the result's shape and counts,
every project torn down; a child that cannot set up or that dies fails the parent with a clear
message instead of hanging. No latency is asserted beyond "positive"."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import time
from pathlib import Path

import pytest
import redis
from bench.data import ensure_ticks
from bench.w2_online import W2A_REFS
from bench.w2_paired import ARMS, ChildFailed, _child, main


@pytest.fixture(scope="module")
def ticks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bench's default ticks file, made once for this module (~1 s)."""
    return ensure_ticks(tmp_path_factory.mktemp("w2_paired_data"))


def _client(address: str) -> redis.Redis:
    host, port = address.rsplit(":", 1)
    return redis.Redis(host=host, port=int(port))


def _projects(address: str) -> set[bytes]:
    """The bench's projects with keys on the server (keys are ``{project:entity}:...``)."""
    with _client(address) as client:
        return {key.split(b":", 1)[0] for key in client.scan_iter(match="{w2p_*", count=10_000)}


@pytest.mark.parametrize(
    ("options", "kept"),
    [
        (["--processes", "--pairs", "3", "--run", "3", "--settle", "1"], 6),
        (["--processes", "--pairs", "6", "--run", "1", "--build-first", "cluster"], 6),
        (["--pairs", "3", "--run", "2"], 6),  # the in-process path, same tiny run
    ],
    ids=["processes-runs", "processes-run1", "in-process"],
)
def test_control_through_main(
    redis_address: str, ticks: Path, capsys: pytest.CaptureFixture[str], options: list[str], kept: int
) -> None:
    argv = ["--data", str(ticks.parent), "--redis", redis_address, "--control", "--workloads", "W2a"]
    assert main([*argv, "--warmup", "2", "--block", "3", "--resamples", "50", *options]) == 0
    out, err = capsys.readouterr()
    (result,) = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert result["workload"] == "W2a-paired" and (result["entities"], result["features"]) == (1, 3)
    assert result["processes"] is ("--processes" in options) and result["control"] is True
    assert result["pairs"] == kept and result["blocks"] == 2
    for arm in ARMS:
        assert result[f"{arm}_us"]["n"] == kept and 0 < result[f"{arm}_us"]["min"] <= result[f"{arm}_us"]["max"]
    assert result["p50_ratio"] > 0 and len(result["p50_ratio_90ci"]) == 2
    assert result["p50_ratio_90ci"][0] <= result["p50_ratio_90ci"][1]
    assert set(result["by_position"]) >= {"single_first_p50_us", "cluster_second_p50_us", "first_calls_p50_ratio"}
    assert "A/A control" in result["arms"]["cluster"] and result["arms"]["single"] == f"redis {redis_address}"
    assert "W2a-paired: single p50" in err and f"{kept} pairs, load" in err
    ours = {b"{" + project.encode() for project in result["projects"].values()}
    assert len(ours) == 2 and all(p.startswith(b"{w2p_") for p in ours)
    assert not _projects(redis_address) & ours  # both stores' projects torn down (other tests may run beside)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_child_that_cannot_set_up_fails_with_its_traceback(ticks: Path) -> None:
    started = time.monotonic()
    failed = pytest.raises(ChildFailed, match=r"(?s)w2_paired redis child failed:.*Traceback")
    with failed, _child(ticks, "redis", f"127.0.0.1:{_closed_port()}", random.Random(1)):
        pytest.fail("the child set up against a closed port")
    assert time.monotonic() - started < 60


def test_a_child_that_dies_fails_the_parent_instead_of_hanging(redis_address: str, ticks: Path) -> None:
    ours: set[bytes] = set()
    try:
        with _child(ticks, "redis", redis_address, random.Random(1)) as arm:
            ours.add(b"{" + arm.project.encode())
            times, answer = arm.time_run(W2A_REFS, [[{"commodity_code": "CMD00001"}]] * 2, True)
            assert len(times) == 2 and min(times) > 0 and answer.values[0] == ["CMD00001"]
            assert arm.process.pid is not None
            os.kill(arm.process.pid, signal.SIGKILL)  # no teardown: this test removes its keys below
            arm.process.join(10)
            started = time.monotonic()
            with pytest.raises(ChildFailed, match=r"died \(exit code -9\)"):
                arm.time_run(W2A_REFS, [[{"commodity_code": "CMD00001"}]], False)
            assert time.monotonic() - started < 10
    finally:
        with _client(redis_address) as client:
            for project in _projects(redis_address) & ours:
                for key in client.scan_iter(match=project.decode() + ":*", count=10_000):
                    client.delete(key)
    assert ours and not _projects(redis_address) & ours
