"""Reads from a Redis Cluster: one script call per master, on raw sockets, replies taken as they arrive.

A read of N random entities touches N slots (keys are hash-tagged by entity), and a multi-key
command cannot span slots, so the plain way is N ``GET``s: N commands to frame, send, parse and
route back, which on the client costs ~1 µs per key more than one ``MGET`` on a single server.
Instead every master gets **one** call of a read-only script declared with Redis 7's
``allow-cross-slot-keys`` flag (:data:`READ_LUA`), whose arguments are the master's keys, framed in
one ``bytes.join`` per view; the reply is one array per master, parsed by a hiredis reader of that
socket. All masters are written first, then :func:`select.poll` hands over each master's reply as
it arrives. The script runs atomically on its master, so a read is atomic per master (no weaker
than one ``MGET`` per slot).

The script refuses a key its master does not serve (a stale slot map after a resharding or a
failover, a slot being migrated): that master's keys then take the general path
(:func:`.fanout.fan_out`: one ``GET`` per key, following ``MOVED`` / ``ASK`` / ``TRYAGAIN`` with a
slot-map refresh), and later reads are routed by the refreshed map. ``NOSCRIPT`` (a restarted
master, ``SCRIPT FLUSH``) loads the script on that master and re-sends. A lost connection or a
timeout raises :class:`LinkLost` / :class:`LinkTimeout`; the caller decides on retries
(:meth:`.cluster.ClusterNodes.read_rows`). TLS connections and servers without the flag (Redis < 7)
are not served here: :attr:`RawReads.usable` turns False and the caller keeps the general path.
"""

from __future__ import annotations

import hashlib
import os
import select
import socket
import threading
from collections.abc import Sequence
from typing import Any

import hiredis

from ladle.errors import BackendError
from ladle.online.redis.conn import RedisEndpoint
from ladle.online.redis.keys import key_prefix, key_suffix
from ladle.online.redis.single import IOSettings

#: GET of every argument, on the master that serves them all (Redis >= 7.0 for the shebang flags).
READ_LUA = (
    "#!lua flags=no-writes,allow-cross-slot-keys\n"
    "local out = {}\n"
    "for i = 1, #ARGV do out[i] = redis.call('GET', ARGV[i]) end\n"
    "return out\n"
)
READ_SHA = hashlib.sha1(READ_LUA.encode()).hexdigest().encode()
_CALL_HEAD = b"$7\r\nEVALSHA\r\n$40\r\n%b\r\n$1\r\n0\r\n" % READ_SHA
#: Keys per script call at most (a call blocks its master meanwhile: ~1 ms per 4096 keys).
CALL_KEYS = 4096
_RECV = 1 << 18
# Error replies meaning "this master does not serve (all) these keys now": take the general path.
_ELSEWHERE = ("non local key", "CLUSTERDOWN", "cluster is down", "MOVED", "ASK", "TRYAGAIN")
Positions = list[int]


class LinkLost(Exception):
    """A master's connection failed (refused, reset, closed) during a read."""


class LinkTimeout(Exception):
    """A master did not answer within the socket timeout."""


class _Link:
    """One socket to one master, with its own hiredis reader."""

    def __init__(self, host: str, port: int, endpoint: RedisEndpoint, settings: IOSettings) -> None:
        self.name = f"{host}:{port}"
        try:
            sock = socket.create_connection((host, port), timeout=settings.connect_timeout)
        except OSError as exc:
            raise LinkLost(f"{self.name}: {exc}") from exc
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.settimeout(settings.socket_timeout)
        self.sock = sock
        self.reader = hiredis.Reader()
        hello: list[bytes] = []
        options = endpoint.options
        if "password" in options:
            auth = [b"AUTH", options["username"].encode()] if "username" in options else [b"AUTH"]
            hello.append(_command(*auth, options["password"].encode()))
        if "client_name" in options:
            hello.append(_command(b"CLIENT", b"SETNAME", options["client_name"].encode()))
        hello.append(_command(b"SCRIPT", b"LOAD", READ_LUA.encode()))
        try:
            self.sock.sendall(b"".join(hello))
            replies = [self.reply() for _ in hello]
        except BaseException:
            self.close()
            raise
        for reply in replies[:-1]:
            if isinstance(reply, hiredis.ReplyError):
                self.close()  # the message names the failure (e.g. WRONGPASS), never the password
                raise LinkLost(f"{self.name} refused the connection: {reply}")
        self.script_error = replies[-1] if isinstance(replies[-1], hiredis.ReplyError) else None

    def reply(self) -> Any:
        """The next reply (blocking, within the socket timeout)."""
        while True:
            reply = self.reader.gets()
            if reply is not False:
                return reply
            self.receive()

    def receive(self) -> None:
        """Feed what the socket has (at least one byte) to the reader."""
        try:
            data = self.sock.recv(_RECV)
        except TimeoutError as exc:
            raise LinkTimeout(f"{self.name}: {exc}") from exc
        except OSError as exc:
            raise LinkLost(f"{self.name}: {exc}") from exc
        if not data:
            raise LinkLost(f"{self.name} closed the connection")
        self.reader.feed(data)

    def send(self, payload: bytes) -> None:
        """Write a whole pipeline."""
        try:
            self.sock.sendall(payload)
        except TimeoutError as exc:
            raise LinkTimeout(f"{self.name}: {exc}") from exc
        except OSError as exc:
            raise LinkLost(f"{self.name}: {exc}") from exc

    def close(self) -> None:
        """Close the socket (unread replies are lost with it)."""
        self.sock.close()  # never raises for a socket the kernel already dropped


def _command(*args: bytes) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join([b"$%d\r\n%b\r\n" % (len(a), a) for a in args])


def _framed_keys(pre: bytes, suf: bytes, entities: Sequence[bytes]) -> bytes:
    """Row keys of ``entities`` as RESP bulk strings, concatenated (one join when widths agree)."""
    if len({len(e) for e in entities}) == 1:
        head = b"$%d\r\n" % (len(pre) + len(entities[0]) + len(suf))
        return head + pre + (suf + b"\r\n" + head + pre).join(entities) + suf + b"\r\n"
    fixed = len(pre) + len(suf)
    return b"".join([b"$%d\r\n%b%b%b\r\n" % (fixed + len(e), pre, e, suf) for e in entities])


class RawReads:
    """Script reads on raw sockets, one link per master, links reused across reads (thread-safe)."""

    def __init__(self, endpoint: RedisEndpoint, settings: IOSettings) -> None:
        self._endpoint = endpoint
        self._settings = settings
        #: False for TLS and for servers that refuse the script (Redis < 7): use the general path.
        self.usable = not endpoint.ssl
        self._idle: list[dict[str, _Link]] = []  # each: one link per master, used by one read at a time
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def _take(self) -> dict[str, _Link]:
        with self._lock:
            if self._pid != os.getpid():  # forked: the parent's sockets are not ours
                self._pid, self._idle = os.getpid(), []
            return self._idle.pop() if self._idle else {}

    def _give(self, links: dict[str, _Link]) -> None:
        with self._lock:
            if len(self._idle) < self._settings.max_connections:
                self._idle.append(links)
                return
        for link in links.values():
            link.close()

    def close(self) -> None:
        """Close every idle link (links in use close when their read fails or on the next close)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for links in idle:
            for link in links.values():
                link.close()

    def read(
        self,
        project: str,
        groups: Sequence[tuple[bytes, Sequence[bytes]]],
        owners: Sequence[Sequence[Any]],
    ) -> tuple[list[bytes | None], list[tuple[int, int, Positions]]]:
        """Values of ``groups`` (view id, entities), in order; and the keys a master refused.

        ``owners[g][j]`` is the node (``.host``, ``.port``, ``.name``) serving entity ``j`` of group
        ``g``. Returns the values (refused ones left ``None``) and, per refused batch, ``(group,
        offset of the group in the output, positions)`` for the caller's general path.
        """
        # positions of each group's entities per master
        plan: dict[str, tuple[Any, list[tuple[int, Positions]]]] = {}
        for g, nodes in enumerate(owners):
            per: dict[str, Positions] = {}
            for j, node in enumerate(nodes):
                name = node.name
                entry = per.get(name)
                if entry is None:
                    per[name] = [j]
                    if name not in plan:
                        plan[name] = (node, [])
                else:
                    entry.append(j)
            for name, positions in per.items():
                plan[name][1].append((g, positions))
        pre = key_prefix(project)
        offsets, total = [], 0
        for _, entities in groups:
            offsets.append(total)
            total += len(entities)
        out: list[bytes | None] = [None] * total
        refused: list[tuple[int, int, Positions]] = []
        links = self._take()
        healthy = False
        try:
            calls = self._send(links, plan, groups, pre)
            self._collect(links, calls, groups, offsets, pre, out, refused)
            healthy = True
        finally:
            if healthy:
                self._give(links)
            else:
                for link in links.values():
                    link.close()
        return out, refused

    def _send(
        self,
        links: dict[str, _Link],
        plan: dict[str, tuple[Any, list[tuple[int, Positions]]]],
        groups: Sequence[tuple[bytes, Sequence[bytes]]],
        pre: bytes,
    ) -> dict[str, list[tuple[int, Positions, bytes]]]:
        """Write every master's calls (one send each); return the calls per master, in send order."""
        calls: dict[str, list[tuple[int, Positions, bytes]]] = {}
        for name, (node, parts) in plan.items():
            link = links.get(name)
            if link is None:
                link = links[name] = _Link(node.host, node.port, self._endpoint, self._settings)
                if link.script_error is not None:
                    self.usable = False  # e.g. Redis < 7: no cross-slot script; stays on the general path
                    raise BackendError(f"Redis Cluster master {name} refused the read script: {link.script_error}")
            mine = calls[name] = []
            payload = []
            for g, positions in parts:
                vid, entities = groups[g]
                suf = key_suffix(vid)
                for start in range(0, len(positions), CALL_KEYS):
                    chunk = positions[start : start + CALL_KEYS]
                    body = _framed_keys(pre, suf, [entities[j] for j in chunk])
                    call = b"*%d\r\n%b%b" % (len(chunk) + 3, _CALL_HEAD, body)
                    mine.append((g, chunk, call))
                    payload.append(call)
            link.send(b"".join(payload))
        return calls

    def _collect(
        self,
        links: dict[str, _Link],
        calls: dict[str, list[tuple[int, Positions, bytes]]],
        groups: Sequence[tuple[bytes, Sequence[bytes]]],
        offsets: list[int],
        pre: bytes,
        out: list[bytes | None],
        refused: list[tuple[int, int, Positions]],
    ) -> None:
        """Take each master's replies as they arrive (poll), in whatever order the masters answer."""
        waiting: dict[int, tuple[_Link, int]] = {}  # fd → link, index of its next call
        poller = select.poll()
        for name in calls:
            link = links[name]
            fd = link.sock.fileno()
            waiting[fd] = (link, 0)
            poller.register(fd, select.POLLIN)
        timeout_ms = int(self._settings.socket_timeout * 1000)
        reloaded: set[str] = set()
        while waiting:
            events = poller.poll(timeout_ms)
            if not events:
                names = ", ".join(link.name for link, _ in waiting.values())
                raise LinkTimeout(f"no reply from {names} within {self._settings.socket_timeout} s")
            for fd, _ in events:
                link, at = waiting[fd]
                link.receive()
                mine = calls[link.name]
                again = []
                while at < len(mine):
                    reply = link.reader.gets()
                    if reply is False:
                        break
                    g, chunk, _ = mine[at]
                    at += 1
                    if g < 0:  # the reply to a SCRIPT LOAD sent after NOSCRIPT
                        if isinstance(reply, hiredis.ReplyError):
                            raise BackendError(f"Redis Cluster master {link.name} refused the read script: {reply}")
                    elif not isinstance(reply, hiredis.ReplyError):
                        base = offsets[g]
                        for j, value in zip(chunk, reply, strict=True):
                            out[base + j] = value
                    elif str(reply).startswith("NOSCRIPT") and link.name not in reloaded:
                        again.append(mine[at - 1])  # script cache flushed or master restarted
                    elif any(marker in str(reply) for marker in _ELSEWHERE):
                        refused.append((g, offsets[g], chunk))
                    else:
                        raise BackendError(f"Redis Cluster master {link.name} refused a read: {reply}")
                if again:  # every earlier reply is in: load the script, then re-send those calls
                    reloaded.add(link.name)
                    load = _command(b"SCRIPT", b"LOAD", READ_LUA.encode())
                    rest = mine[at:]
                    mine = calls[link.name] = [*rest, (-1, [], load), *again]
                    link.send(load + b"".join(call for _, _, call in again))
                    at = 0
                if at == len(mine):
                    poller.unregister(fd)
                    del waiting[fd]
                else:
                    waiting[fd] = (link, at)
