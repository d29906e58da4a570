"""Where a 100-key read's wall time goes on the wire: one Redis server against a local cluster.

The store's own framing (one ``MGET`` on one server; one pipeline of ``GET``s per master, routed and
framed by :mod:`ladle.online.redis.cluster_read`) is sent on plain sockets that ask the kernel for
receive timestamps (``SO_TIMESTAMPNS``). Per read it records, from the moment before the first
``send``:

* ``send_us``: when each ``send`` returned (cumulative, in the order written);
* ``arrive_us``: when each server's reply was complete in the client's socket (the kernel's
  timestamp of the last segment; taken in the server's ``write``, so it does not include the
  client's wake-up);
* ``wake_us``: from the last reply's arrival to the client running again (``poll`` returned);
* ``total_us``: the whole exchange, as a read sees it.

Framing and routing are done before the clock starts and replies are not decoded: this is the I/O
alone. Reads alternate one server / cluster, the same random entities for both. ``--only`` times one
of them alone (the other's servers stay idle: run it once per backend, one process each), and
``--between-us`` keeps the client busy that long between reads, off the clock, as a store's own work
around its reads does (key building, decoding): on a 2-vCPU VM that busy time changes how fast the
servers answer, more for three masters than for one (docs/scaling.md, ninth pass).

    .venv/bin/python -m bench.redis_timeline --redis 127.0.0.1:6391                # starts a local cluster
    .venv/bin/python -m bench.redis_timeline --redis 127.0.0.1:6391 --redis-nodes <nodes>
    .venv/bin/python -m bench.redis_timeline --redis 127.0.0.1:6391 --redis-nodes <nodes> --only redis --between-us 150
"""

from __future__ import annotations

import argparse
import random
import select
import socket
import statistics
import struct
import time
import uuid
from collections.abc import Sequence
from typing import Any

import hiredis

from bench.common import emit
from bench.redis_reads import _store, _view, add_backend_options, on_cluster, table_of

_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux
_STAMP = struct.Struct("qq")


class _Wire:
    """A plain non-blocking socket to one server, reporting the kernel's receive time of what it reads."""

    def __init__(self, host: str, port: int) -> None:
        sock = socket.create_connection((host, port), timeout=5)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, _TIMESTAMPNS, 1)
        sock.setblocking(False)
        self.sock = sock

    def replies(self, count: int) -> tuple[int, int]:
        """Read ``count`` replies; return (kernel time the last bytes arrived, local time they were read), in ns."""
        reader = hiredis.Reader()
        got = 0
        arrived = seen = 0
        while got < count:
            try:
                data, ancillary, _, _ = self.sock.recvmsg(1 << 18, 256)
            except BlockingIOError:
                poller = select.poll()
                poller.register(self.sock.fileno(), select.POLLIN)
                if not poller.poll(5000):
                    raise TimeoutError("no reply within 5 s") from None
                continue
            seen = time.time_ns()
            if not data:
                raise ConnectionError("the server closed the connection")
            for level, kind, raw in ancillary:
                if level == socket.SOL_SOCKET and kind == _TIMESTAMPNS:
                    sec, nsec = _STAMP.unpack(raw[: _STAMP.size])
                    arrived = sec * 1_000_000_000 + nsec
            reader.feed(data)
            while reader.gets() is not False:
                got += 1
        return arrived, seen

    def close(self) -> None:
        """Close the socket."""
        self.sock.close()


def exchange(wires: Sequence[_Wire], payloads: Sequence[bytes], counts: Sequence[int]) -> dict[str, Any]:
    """Send every payload (in order), then take the replies, last-written first; one read's timeline in µs."""
    start = time.time_ns()
    sent = []
    for wire, payload in zip(wires, payloads, strict=True):
        wire.sock.sendall(payload)
        sent.append(time.time_ns())
    arrived = [0] * len(wires)
    seen = [0] * len(wires)
    for n in reversed(range(len(wires))):  # the store's order: wait on the last-written, the others are then ready
        arrived[n], seen[n] = wires[n].replies(counts[n])
    end = time.time_ns()
    last = max(range(len(wires)), key=arrived.__getitem__)
    return {
        "send_us": [(t - start) / 1000 for t in sent],
        "arrive_us": [(t - start) / 1000 for t in arrived],
        "wake_us": (seen[last] - arrived[last]) / 1000,
        "total_us": (end - start) / 1000,
    }


def summarize_timelines(reads: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Medians of each mark over ``reads`` (lists element by element), rounded to 0.1 µs."""

    def med(values: Sequence[float]) -> float:
        return round(statistics.median(values), 1)

    out: dict[str, Any] = {}
    for key in ("send_us", "arrive_us"):
        width = len(reads[0][key])
        out[key] = [med([r[key][i] for r in reads]) for i in range(width)]
    out["last_arrival_us"] = med([max(r["arrive_us"]) for r in reads])
    for key in ("wake_us", "total_us"):
        out[key] = med([r[key] for r in reads])
    return out


def busy(micros: float) -> None:
    """Keep this thread on its CPU for ``micros`` µs (Python work, no system calls)."""
    if micros <= 0:
        return
    until = time.perf_counter_ns() + int(micros * 1000)
    scratch = list(range(64))
    while time.perf_counter_ns() < until:
        scratch.sort(reverse=scratch[0] == 0)


def run(args: argparse.Namespace, cluster_nodes: str) -> None:
    """Write the rows, then alternate single / cluster exchanges; one JSON line per backend."""
    from ladle.online.keys import entity_join_keys, text_entity_keys
    from ladle.online.redis.cluster_read import plan_gets, routing
    from ladle.online.redis.keys import view_id
    from ladle.online.redis.resp import resp_row_keys

    view = _view()
    codes = [f"C{i:06d}" for i in range(args.entities)]
    project = f"rt{uuid.uuid4().hex[:8]}"
    single, cluster = _store("redis", args.redis), _store("redis_cluster", cluster_nodes)
    wires: list[_Wire] = []
    try:
        rows = table_of(codes)
        single.write(project, view, rows)
        cluster.write(project, view, rows)
        masters, by_crc = cluster._io.run(routing)
        host, port = args.redis.rsplit(":", 1)
        one = _Wire(host, int(port))
        per_master = [_Wire(node.host, int(node.port)) for node in masters]
        wires = [one, *per_master]
        vid = view_id(view.name)
        join_keys = entity_join_keys(view)
        rng = random.Random(11)
        timelines: dict[str, list[dict[str, Any]]] = {"redis": [], "redis_cluster": []}
        for i in range(args.warmup + args.reads):
            entities = text_entity_keys(join_keys, {"code": rng.sample(codes, args.batch)})
            mget = b"*%d\r\n$4\r\nMGET\r\n%b" % (len(entities) + 1, resp_row_keys(project, vid, entities))
            plan, _ = plan_gets(project, [(vid, entities)], by_crc, len(masters))
            gets = [pieces[0] for _, pieces in plan.values()]  # one group: one piece per master
            order = ("redis", "redis_cluster") if i % 2 == 0 else ("redis_cluster", "redis")
            for name in order if args.only is None else (args.only,):
                busy(args.between_us)
                if name == "redis":
                    mark = exchange([one], [mget], [1])
                else:
                    mark = exchange([per_master[k] for k in plan], gets, [len(t) for t, _ in plan.values()])
                if i >= args.warmup:
                    timelines[name].append(mark)
        for name, reads in timelines.items():
            if not reads:
                continue
            emit(
                {
                    "bench": "redis_timeline",
                    "backend": name,
                    "batch": args.batch,
                    "reads": len(reads),
                    "alone": args.only is not None,
                    "between_us": args.between_us,
                    **summarize_timelines(reads),
                },
                machine=name == (args.only or "redis"),
            )
    finally:
        for wire in wires:
            wire.close()
        for store in (single, cluster):
            store.teardown(project, [])
            store.close()


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_backend_options(parser)
    parser.add_argument("--reads", type=int, default=3_000, help="timed reads per backend")
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument(
        "--only", choices=["redis", "redis_cluster"], default=None, help="time one backend alone (default: both)"
    )
    parser.add_argument(
        "--between-us", type=float, default=0.0, help="client busy time between reads, off the clock (µs)"
    )
    on_cluster(parser.parse_args(argv), run)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
