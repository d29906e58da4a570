"""Ladle servers with auth on, for the auth tests: a repo with an ``auth:`` section, REST over
uvicorn and gRPC on either engine, each on an ephemeral loopback port in a background thread."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvicorn
import yaml

from ladle import FeatureStore
from ladle.security.principal import Principal
from ladle.server.core import ServerCore
from ladle.server.grpc_server import GrpcServer
from ladle.server.settings import ServerSettings
from unit.server_repo import build_repo


def repo_with_auth(path: Path, auth: dict[str, Any]) -> Path:
    """The server test repo under ``path`` with ``auth`` as its ``auth:`` section."""
    build_repo(path).store.close()
    yaml_file = path / "feature_store.yaml"
    config = yaml.safe_load(yaml_file.read_text())
    config["auth"] = auth
    yaml_file.write_text(yaml.safe_dump(config))
    return path


class Recorder:
    """Wraps a core's entry points to record which principal each call was made as."""

    def __init__(self, core: ServerCore) -> None:
        self.seen: list[tuple[str, Principal]] = []
        for name in ("get_online_features", "push", "write_to_online_store", "views_to_materialize"):
            original = getattr(core, name)

            def wrapper(*args: Any, _name: str = name, _original: Any = original, **kwargs: Any) -> Any:
                passed = [a for a in args if isinstance(a, Principal)]
                principal = kwargs.get("principal", passed[0] if passed else None)
                self.seen.append((_name, principal))  # type: ignore[arg-type]
                return _original(*args, **kwargs)

            setattr(core, name, wrapper)


class Loop:
    """An asyncio loop in a daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@contextmanager
def grpc_server(core: ServerCore, engine: str) -> Iterator[int]:
    """Serve gRPC with ``engine`` over ``core``; yields the port."""
    loop = Loop()

    async def make() -> GrpcServer:
        return GrpcServer(core, engine=engine)

    server: GrpcServer = loop.run(make())
    try:
        yield loop.run(server.start("127.0.0.1", 0))
    finally:
        loop.run(server.stop(1))
        loop.close()


@contextmanager
def rest_server(app: Any) -> Iterator[str]:
    """Serve ``app`` (an ASGI app: a RestApp, the UI's) with uvicorn on a loopback port; yields its base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, lifespan="off", log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        while not server.started:
            thread.join(0.05)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def open_store(path: Path) -> FeatureStore:
    """The repo's store (the caller closes it)."""
    return FeatureStore(repo_path=path)


def core_of(store: FeatureStore) -> ServerCore:
    """A server core over ``store`` with default settings."""
    return ServerCore(store, ServerSettings())
