"""The gRPC server ``ladle serve`` runs, on the engine ``grpc_engine`` names."""

from __future__ import annotations

from typing import Any

from ladle.server.core import ServerCore
from ladle.server.tls import TlsFiles


class GrpcServer:
    """The gRPC server ``ladle serve`` runs: the built-in engine (default) or grpcio's, by ``grpc_engine``."""

    def __init__(
        self, core: ServerCore, *, reuse_port: bool = False, engine: str | None = None, tls: TlsFiles | None = None
    ) -> None:
        self.engine = engine or core.settings.grpc_engine
        self._reuse_port = reuse_port
        self._tls = tls
        self._server: Any
        if self.engine == "grpcio":
            from ladle.server.grpc_grpcio import GrpcioEngine

            self._server = GrpcioEngine(core, reuse_port=reuse_port, tls=tls)
        else:
            from ladle.server.grpc_h2 import H2Engine

            self._server = H2Engine(core)

    async def start(self, host: str, port: int) -> int:
        """Bind and start; returns the bound port."""
        if self.engine == "grpcio":
            return int(await self._server.start(host, port))
        context = self._tls.context(["h2"]) if self._tls is not None else None
        return int(await self._server.start(host, port, reuse_port=self._reuse_port, ssl=context))

    async def stop(self, grace: float) -> None:
        """Report NOT_SERVING, refuse new calls and let running ones finish within ``grace`` seconds."""
        await self._server.stop(grace)
