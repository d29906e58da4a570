"""Listening sockets shared by the supervisor, the workers and the built-in gRPC engine."""

from __future__ import annotations

import socket


def reuseport_socket(host: str, port: int, what: str, *, reuse_port: bool = True) -> socket.socket:
    """A TCP socket bound to ``host:port``, with SO_REUSEPORT unless told otherwise (not listening yet)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot listen for {what} on {host}:{port}: {exc.strerror}") from None
    return sock
