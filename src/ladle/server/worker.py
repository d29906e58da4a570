"""One server worker process: REST (uvicorn) and gRPC (either engine) on one uvloop event loop.

Started by :mod:`ladle.server.runner` as ``python -m ladle.server.worker '<json>'`` (a plain
subprocess, so it imports only what serving needs). It listens on the REST and gRPC ports with
SO_REUSEPORT, alongside the other workers, and reports ``ready`` or ``error`` as one line on the
supervisor's pipe. On SIGTERM (or when the supervisor disappears) it stops accepting, lets
in-flight requests finish within ``graceful_timeout`` and exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ladle.server.http_protocol import RestLimits, RestProtocolFactory
from ladle.server.settings import ServerSettings
from ladle.server.sockets import reuseport_socket
from ladle.server.tls import TlsFiles
from ladle.store import FeatureStore

log = logging.getLogger("ladle.server.worker")  # not __main__ under python -m


@dataclass(frozen=True)
class StoreSpec:
    """Where a worker finds the feature repo (what the supervisor hands a worker, instead of a store)."""

    repo_path: Path
    fs_yaml_file: Path | None = None

    def open(self, settings: ServerSettings) -> FeatureStore:
        """A store whose registry refreshes in the background every ``registry_ttl_sec``."""
        store = FeatureStore(repo_path=self.repo_path, fs_yaml_file=self.fs_yaml_file)
        return with_registry_ttl(store, settings.registry_ttl_sec)


def with_registry_ttl(store: FeatureStore, ttl: float | None) -> FeatureStore:
    """``store`` with its registry cache refreshed in a background thread every ``ttl`` seconds."""
    registry = store.config.registry
    update: dict[str, Any] = {"cache_mode": "thread"}
    if ttl:
        update["cache_ttl_seconds"] = ttl
    config = store.config.model_copy(update={"registry": registry.model_copy(update=update)})
    return FeatureStore(config=config)


def raise_fd_limit() -> int | None:
    """Raise this process's soft file-descriptor limit to its hard limit; returns the limit in force."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    return None if soft == resource.RLIM_INFINITY else soft


class _Uvicorn:
    """uvicorn's server without its signal handling (the worker owns SIGTERM), with Ladle's REST limits."""

    def __init__(self, app: Any, settings: ServerSettings, limits: RestLimits) -> None:
        import uvicorn

        class Server(uvicorn.Server):
            @contextlib.contextmanager
            def capture_signals(self) -> Iterator[None]:
                yield

        self.protocols = RestProtocolFactory(limits)
        config = uvicorn.Config(
            app,
            loop="none",
            http=self.protocols,  # type: ignore[arg-type]  # a protocol factory; uvicorn only calls it
            ws="none",
            lifespan="on",
            log_config=None,
            access_log=settings.access_log,
            server_header=False,
            timeout_keep_alive=settings.keep_alive_timeout,
            timeout_graceful_shutdown=max(1, round(settings.graceful_timeout)),
        )
        self.server = Server(config)

    async def serve(self, sock: socket.socket) -> None:
        await self.server.serve(sockets=[sock])

    def stop(self) -> None:
        self.server.should_exit = True
        self.protocols.close()


async def _housekeeping(stop: asyncio.Event) -> None:
    """Flush metrics every half second; stop if the supervisor is gone."""
    from ladle.server import metrics

    parent = os.getppid()
    while not stop.is_set():
        metrics.flush()
        if os.getppid() != parent:
            log.warning("supervisor %d is gone; shutting down", parent)
            stop.set()
        await asyncio.sleep(0.5)


async def serve_worker(
    spec: StoreSpec, settings: ServerSettings, report: Callable[[str], None] = lambda line: None
) -> None:
    """Serve until SIGTERM/SIGINT; ``report`` gets ``"ready <pid> <grpc port>"`` once listening."""
    from ladle.server import metrics
    from ladle.server.core import ServerCore
    from ladle.server.grpc_server import GrpcServer
    from ladle.server.rest import RestApp

    store = spec.open(settings)
    core = ServerCore(store, settings)
    tls = TlsFiles.load(core.settings)
    fd_limit = raise_fd_limit()
    store.snapshot()  # load the registry before the first request
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    tasks: list[asyncio.Task[Any]] = [asyncio.create_task(_housekeeping(stop))]
    rest = None
    if settings.rest:
        rest_socket = reuseport_socket(settings.host, settings.port, "REST")
        rest_socket.listen(2048)
        limits = RestLimits.of(settings, fd_limit, tls.context(["http/1.1"]) if tls else None)
        rest = _Uvicorn(RestApp(core), settings, limits)
        tasks.append(asyncio.create_task(rest.serve(rest_socket)))
    grpc_server = None
    grpc_port = 0
    if settings.grpc:
        grpc_server = GrpcServer(core, reuse_port=True, tls=tls)
        grpc_port = await grpc_server.start(settings.host, settings.grpc_port)
    metrics.worker_started()
    report(f"ready {os.getpid()} {grpc_port}")
    waiter = asyncio.create_task(stop.wait())
    await asyncio.wait([waiter, *tasks[1:]], return_when=asyncio.FIRST_COMPLETED)
    log.info("worker %d shutting down", os.getpid())
    if rest is not None:
        rest.stop()
    if grpc_server is not None:
        await grpc_server.stop(settings.graceful_timeout)
    await asyncio.gather(*tasks[1:], return_exceptions=True)
    for task in (waiter, tasks[0]):
        task.cancel()
    metrics.flush()
    store.close()


def payload(spec: StoreSpec, settings: ServerSettings, report_fd: int, log_level: str) -> str:
    """The command-line argument :func:`main` reads."""
    return json.dumps(
        {
            "repo_path": str(spec.repo_path),
            "fs_yaml_file": str(spec.fs_yaml_file) if spec.fs_yaml_file else None,
            "settings": dataclasses.asdict(settings),
            "report_fd": report_fd,
            "log_level": log_level,
        }
    )


def main(argv: list[str]) -> None:
    """Process entry point: ``python -m ladle.server.worker '<payload>'``."""
    import uvloop

    args = json.loads(argv[0])
    logging.basicConfig(level=args["log_level"], format="%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s")
    report_fd = args["report_fd"]

    def report(line: str) -> None:
        os.write(report_fd, (line.replace("\n", " ") + "\n").encode())  # one write < PIPE_BUF: atomic

    yaml = args["fs_yaml_file"]
    spec = StoreSpec(Path(args["repo_path"]), Path(yaml) if yaml else None)
    settings = ServerSettings(**args["settings"])
    try:
        uvloop.run(serve_worker(spec, settings, report))
    # Tell the supervisor why, so a start-up failure stops the server instead of respawning forever.
    except Exception as exc:
        report(f"error {os.getpid()} {type(exc).__name__}: {exc}")
        raise


if __name__ == "__main__":
    main(sys.argv[1:])
