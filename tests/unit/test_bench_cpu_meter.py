"""The benches' CPU accounting: which Redis servers an address names, and the CPU they and we used."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import redis
from bench.common import CpuMeter, redis_cpu_s, redis_servers, tree_cpu_seconds


def _busy_server(host: str, port: int, calls: int) -> None:
    """Make one server work: ``calls`` pipelined commands that each cost it a little CPU."""
    with redis.Redis(host=host, port=port) as client:
        pipe = client.pipeline(transaction=False)
        for i in range(calls):
            pipe.execute_command("PING", f"x{i}")
        pipe.execute()


def test_a_single_address_is_its_one_server() -> None:
    assert redis_servers("redis", "10.0.0.5:6380") == [("10.0.0.5", 6380)]
    assert redis_servers("sqlite", "ignored") == []


def test_a_cluster_address_names_every_node(redis_cluster_nodes: str) -> None:
    startup = redis_cluster_nodes.split(",")
    servers = redis_servers("redis_cluster", startup[0])  # one startup node is enough
    assert sorted(f"{h}:{p}" for h, p in servers) == sorted(startup)


def test_server_cpu_grows_with_the_servers_work(redis_address: str) -> None:
    host, port = redis_address.rsplit(":", 1)
    servers = [(host, int(port))]
    before = redis_cpu_s(servers)
    _busy_server(host, int(port), 20_000)
    assert redis_cpu_s(servers) > before


def test_the_meter_splits_our_cpu_from_the_servers(redis_address: str) -> None:
    host, port = redis_address.rsplit(":", 1)
    with CpuMeter(redis_servers("redis", redis_address)) as cpu:
        _busy_server(host, int(port), 20_000)
        sum(i * i for i in range(2_000_000))  # client-side work, user time
    figures = cpu.per_call(1000)
    assert cpu.server > 0 and cpu.user > 0
    assert figures["servers_us"] == round(cpu.server * 1000, 1)
    assert figures["client_user_us"] == round(cpu.user * 1000, 1)
    assert figures["client_sys_us"] == round(cpu.sys * 1000, 1)
    with CpuMeter() as local:  # no servers: their figure is None, not 0
        sum(i * i for i in range(200_000))
    assert local.per_call(10)["servers_us"] is None


def test_tree_cpu_counts_a_process_and_its_children() -> None:
    """A parent that only sleeps, whose child burns ~0.4 s of CPU: the tree's CPU includes the child's."""
    burn = "import time\nend = time.process_time() + 0.4\nwhile time.process_time() < end: pass\ntime.sleep(30)"
    spawn = f"import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', {burn!r}]); time.sleep(30)"
    parent = subprocess.Popen([sys.executable, "-c", spawn])
    try:
        deadline = time.monotonic() + 10
        while tree_cpu_seconds(parent.pid) < 0.4 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert tree_cpu_seconds(parent.pid) >= 0.4
        own = os.times()
        assert tree_cpu_seconds(os.getpid()) >= own.user + own.system - 0.05  # ticks round down
    finally:
        for child in Path(f"/proc/{parent.pid}/task/{parent.pid}/children").read_text().split():
            os.kill(int(child), 9)
        parent.kill()
        parent.wait()
