"""Run a local Kafka-protocol broker in the foreground: ``python -m ladle.streaming.devbroker --port 19092``.

For the demo (``scripts/demo.sh``), the benchmarks and trying ``ladle stream`` by hand. It starts
:class:`~ladle.streaming.broker.LocalBroker` (Tansu, in-memory topics unless ``--storage`` says
otherwise), prints ``ready <host:port>`` once the broker answers, and stops it on SIGTERM or
Ctrl-C (the in-memory topics are gone). A broker that cannot start, or a busy port, is one line
on stderr and exit status 1.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType

from ladle.errors import LadleError
from ladle.streaming.broker import LocalBroker, port_free

DEFAULT_PORT = 19092


def main(argv: list[str] | None = None) -> int:
    """Run the broker until SIGTERM or SIGINT; return the exit status."""
    parser = argparse.ArgumentParser(prog="python -m ladle.streaming.devbroker", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port on 127.0.0.1 (default {DEFAULT_PORT})")
    parser.add_argument("--storage", default="memory://tansu/", help="Tansu storage URL (default: in memory)")
    args = parser.parse_args(argv)
    if not port_free(args.port):
        print(f"devbroker: port {args.port} on 127.0.0.1 is already in use", file=sys.stderr)
        return 1
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        broker = LocalBroker(port=args.port, storage=args.storage).start()
    except LadleError as exc:
        print(f"devbroker: {exc}", file=sys.stderr)
        return 1
    try:
        print(f"ready {broker.bootstrap_servers}", flush=True)
        stop.wait()
    finally:
        broker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
