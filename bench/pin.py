"""``--pin CLIENT:SERVERS``: a bench's client on some CPUs, its local Redis servers on others.

On a 2-vCPU machine the scheduler decides whether a Redis server runs on the client's vCPU, and that
alone moves a W2b read by ~75 µs: one server pinned to the client's vCPU answered in 104 µs, on
the other vCPU in 183 µs (an idle vCPU halts here, and each cross-vCPU wake-up costs tens of µs).
Production never shares a CPU between a client and its Redis, so a comparison of one server with a
cluster is only fair when neither arm's servers sit on the client's CPUs. ``--pin 1:0`` puts the
bench process (and every process it starts later) on CPU 1 and every Redis server of the run (the
single server, each cluster node) on CPU 0, for the run only; the affinities they had are restored
afterwards. The three masters of a local cluster then share one CPU where production gives each
its own host, which counts against the cluster.

Servers must be local (loopback): their process ids come from ``INFO server``.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import os
from collections.abc import Iterator, Sequence

#: What ``--pin`` parses to: the client's CPUs and the servers' CPUs.
Pin = tuple[frozenset[int], frozenset[int]]


def _cpus(text: str) -> frozenset[int]:
    cpus: set[int] = set()
    for part in text.split(","):
        first, _, last = part.strip().partition("-")
        if not first.isdigit() or (last and not last.isdigit()):
            raise argparse.ArgumentTypeError(f"not a CPU list: {text!r} (e.g. 0 or 0,2 or 0-3)")
        cpus.update(range(int(first), int(last or first) + 1))
    return frozenset(cpus)


def parse_pin(text: str) -> Pin:
    """``CLIENT:SERVERS``, each a CPU list (``1``, ``0,2``, ``2-3``); both must be CPUs this process
    may use, and they must not overlap."""
    client_text, sep, server_text = text.partition(":")
    if not sep:
        raise argparse.ArgumentTypeError(f"--pin is CLIENT:SERVERS, e.g. 1:0; got {text!r}")
    client, servers = _cpus(client_text), _cpus(server_text)
    usable = os.sched_getaffinity(0)
    if not client <= usable or not servers <= usable:
        raise argparse.ArgumentTypeError(f"--pin {text}: this machine's usable CPUs are {sorted(usable)}")
    if client & servers:
        raise argparse.ArgumentTypeError(f"--pin {text}: the client's and the servers' CPUs must differ")
    return client, servers


def server_pids(servers: Sequence[tuple[str, int]]) -> list[int]:
    """The process ids of local Redis ``servers`` (``INFO server``); a remote one is an error."""
    import redis

    pids = []
    for host, port in servers:
        if not _loopback(host):
            raise ValueError(f"--pin needs local Redis servers; {host}:{port} is not on loopback")
        with redis.Redis(host=host, port=port) as client:
            pids.append(int(client.info("server")["process_id"]))
    return pids


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name other than localhost
        return False


@contextlib.contextmanager
def pinned(pin: Pin | None, servers: Sequence[tuple[str, int]]) -> Iterator[dict[str, list[int]] | None]:
    """Within the block, this process on ``pin``'s client CPUs and ``servers`` on its server CPUs;
    yields what was pinned (for the bench's report), or ``None`` without a pin."""
    if pin is None:
        yield None
        return
    client, cpus = pin
    pids = server_pids(servers)
    before = {pid: os.sched_getaffinity(pid) for pid in [0, *pids]}
    try:
        os.sched_setaffinity(0, client)
        for pid in pids:
            os.sched_setaffinity(pid, cpus)
        yield {"client_cpus": sorted(client), "server_cpus": sorted(cpus), "server_pids": pids}
    finally:
        for pid, mask in before.items():
            with contextlib.suppress(ProcessLookupError):  # a server that stopped meanwhile
                os.sched_setaffinity(pid, mask)
