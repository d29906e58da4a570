"""Reads from a Redis Cluster on raw sockets: one pipeline of GETs per master, replies taken as they arrive.

A read of N random entities touches N slots (keys are hash-tagged by entity) and a multi-key
command cannot span slots, so it is N ``GET``s. Going through redis-py's connection layer cost the
client several µs per master and per key; here each master has one plain socket (reused across
reads) with its own hiredis reader. Each master's ``GET``s are framed into one pipeline
(:func:`plan_reads`: in C when the accelerator is built, else :func:`plan_gets`) and sent in one
write; all masters are written first, then their replies are taken as they arrive,
in whatever order the masters answer. The sockets are non-blocking, so a read is one ``send`` and
(usually) one ``recv`` per master and nothing else: each master is tried in the order written and
:func:`select.poll` waits only for masters with nothing yet. (A read-only cross-slot Lua
script per master, one call instead of N commands, was measured too: it cost the masters ~0.5 µs
more per key than a ``GET``, more than it saved the client.)

A ``MOVED`` / ``ASK`` / ``TRYAGAIN`` / ``CLUSTERDOWN`` reply (a stale slot map after a resharding
or a failover, a slot being migrated) leaves that key to the caller's general path
(:func:`.fanout.fan_out`, which follows the redirection and refreshes the slot map), so later reads
are routed by the refreshed map. A lost connection or a timeout raises :class:`LinkLost` /
:class:`LinkTimeout`; the caller decides on retries (:meth:`.cluster.ClusterNodes.read_rows`).
Passwords, ACL users and client names are sent on connect as redis-py would.

Over TLS (``ssl=true``) each link is a :class:`_TlsLink`: its socket is wrapped with one
:class:`ssl.SSLContext` per endpoint, built from the connection string's ``ssl_*`` options as
redis-py builds its own (:func:`tls_context`); the handshake runs blocking within the connect timeout,
then the socket is non-blocking like a plain one. A TLS socket can hold decrypted bytes that ``poll``
cannot see, so a TLS link's receive takes them too before it returns (:meth:`_TlsLink.receive`).
"""

from __future__ import annotations

import binascii
import os
import select
import socket
import ssl
import threading
import time
from array import array
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from itertools import repeat
from types import ModuleType
from typing import Any

import hiredis

from ladle.errors import BackendError, ConfigError
from ladle.online.redis.conn import RedisEndpoint
from ladle.online.redis.fanout import slot_table
from ladle.online.redis.keys import key_prefix, key_suffix
from ladle.online.redis.single import IOSettings
from ladle.online.redis.slots import row_slots

#: The optional C accelerator of :func:`plan_reads` (``hatch_build.py`` builds it at install);
#: without it, or with ``LADLE_NO_NATIVE=1`` in the environment, the same work is done in Python.
_native: ModuleType | None = None
if os.environ.get("LADLE_NO_NATIVE") != "1":
    try:
        from ladle.online.redis import _cluster_plan as _native
    except ImportError:  # pragma: no cover - installed without a C compiler
        _native = None

_GET = b"*2\r\n$3\r\nGET\r\n"
#: Bytes one ``recv_into`` may take (redis-py's default read size). Each link reads into its own
#: buffer: ``sock.recv(n)`` allocates ``n`` bytes per call, which at 256 KiB is an ``mmap`` /
#: ``munmap`` pair per receive wherever glibc has not yet raised its mmap threshold (~15 µs more per
#: receive in a micro-benchmark; the bench processes had raised it, and measured no difference).
_RECV = 1 << 16
# Error replies meaning "this master does not serve this key now": the general path follows them.
_ELSEWHERE = ("MOVED", "ASK", "TRYAGAIN", "CLUSTERDOWN")
_PLAIN = {bytes, type(None)}
#: How long a read polls its sockets without sleeping before ``poll`` may sleep (``RawReads._collect``):
#: off unless ``LADLE_CLUSTER_SPIN_US`` is set (200 measured best for one-entity reads at low
#: concurrency; the spin costs a loaded server CPU its other requests need, docs/redis.md).
_SPIN_NS = int(os.environ.get("LADLE_CLUSTER_SPIN_US", "0")) * 1000


class LinkLost(Exception):
    """A master's connection failed (refused, reset, closed) during a read."""


class LinkTimeout(Exception):
    """A master did not answer within the socket timeout."""


class _Link:
    """One socket to one master, with its own hiredis reader.

    After the connection's hello the socket is non-blocking: a send or a receive is one system call
    (a socket with a timeout would first ``poll`` it, every time), and waits are explicit polls
    bounded by the socket timeout.
    """

    def __init__(
        self, host: str, port: int, endpoint: RedisEndpoint, settings: IOSettings, context: ssl.SSLContext | None = None
    ) -> None:
        self.name = f"{host}:{port}"
        self.timeout = settings.socket_timeout
        try:
            sock = socket.create_connection((host, port), timeout=settings.connect_timeout)
        except OSError as exc:
            raise LinkLost(f"{self.name}: {exc}") from exc
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        if context is not None:
            sock = _handshake(sock, context, host, self.name)  # still blocking, within the connect timeout
        sock.setblocking(False)
        self.sock = sock
        self.fd = sock.fileno()
        self.reader = hiredis.Reader()
        self.buffer = bytearray(_RECV)
        hello: list[bytes] = []
        options = endpoint.options
        if "password" in options:
            auth = [b"AUTH", options["username"].encode()] if "username" in options else [b"AUTH"]
            hello.append(_command(*auth, options["password"].encode()))
        if "client_name" in options:
            hello.append(_command(b"CLIENT", b"SETNAME", options["client_name"].encode()))
        if not hello:
            return
        try:
            self.send(b"".join(hello))
            replies = [self.reply() for _ in hello]
        except BaseException:
            self.close()
            raise
        for reply in replies:
            if isinstance(reply, hiredis.ReplyError):
                self.close()  # the message names the failure (e.g. WRONGPASS), never the password
                raise LinkLost(f"{self.name} refused the connection: {reply}")

    def reply(self) -> Any:
        """The next reply (waiting within the socket timeout)."""
        while True:
            reply = self.reader.gets()
            if reply is not False:
                return reply
            while not self.receive():
                self.wait(select.POLLIN)

    def receive(self) -> bool:
        """Feed what the socket holds to the reader; False if nothing has arrived yet."""
        try:
            size = self.sock.recv_into(self.buffer)
        except BlockingIOError:
            return False
        except OSError as exc:
            raise LinkLost(f"{self.name}: {exc}") from exc
        if not size:
            raise LinkLost(f"{self.name} closed the connection")
        # The reader copies what it is fed, so the buffer is free for the next receive. hiredis takes any
        # buffer (its stubs say bytes).
        self.reader.feed(self.buffer, 0, size)  # type: ignore[arg-type]
        return True

    def send(self, payload: bytes) -> None:
        """Write a whole pipeline (waiting only if the socket's buffer is full)."""
        view = memoryview(payload)
        while True:
            try:
                sent = self.sock.send(view)
            except BlockingIOError:
                sent = 0
            except OSError as exc:
                raise LinkLost(f"{self.name}: {exc}") from exc
            if sent == len(view):
                return
            view = view[sent:]
            self.wait(select.POLLOUT)

    def wait(self, event: int) -> None:
        """Wait until the socket is ready for ``event``; :class:`LinkTimeout` after the socket timeout."""
        poller = select.poll()
        poller.register(self.fd, event)
        if not poller.poll(int(self.timeout * 1000)):
            raise LinkTimeout(f"{self.name}: timed out")

    def close(self) -> None:
        """Close the socket (unread replies are lost with it)."""
        self.sock.close()  # never raises for a socket the kernel already dropped


class _TlsLink(_Link):
    """A :class:`_Link` over TLS: the same non-blocking socket, with TLS's two extra ways to wait.

    A non-blocking TLS socket raises :class:`ssl.SSLWantReadError` / :class:`ssl.SSLWantWriteError`
    where a plain one raises :class:`BlockingIOError` (either way round: TLS may need to read to
    write, or the reverse). A receive returns at most one TLS record's bytes and may leave more
    decrypted bytes inside the SSL object (:meth:`ssl.SSLSocket.pending`), where ``poll`` cannot see
    them: :meth:`receive` takes them all, so whatever is left to read is in the kernel, where ``poll``
    sees it. The plain :class:`_Link` keeps its own two methods untouched.
    """

    sock: ssl.SSLSocket

    def receive(self) -> bool:
        """Feed what the socket holds to the reader; False if no application data has arrived yet."""
        sock, buffer, feed = self.sock, self.buffer, self.reader.feed
        try:
            size = sock.recv_into(buffer)
            if size:
                feed(buffer, 0, size)  # type: ignore[arg-type]  # (hiredis takes any buffer: see _Link)
                while sock.pending():  # decrypted already: poll would never report it
                    feed(buffer, 0, sock.recv_into(buffer))  # type: ignore[arg-type]
        except ssl.SSLWantReadError:  # no whole record yet (or only TLS's own messages, e.g. session tickets)
            return False
        except ssl.SSLWantWriteError:  # TLS must send before it can read: wait until it can
            self.wait(select.POLLOUT)
            return False
        except OSError as exc:
            raise LinkLost(f"{self.name}: {exc}") from exc
        if not size:
            raise LinkLost(f"{self.name} closed the connection")
        return True

    def send(self, payload: bytes) -> None:
        """Write a whole pipeline; a retry after a want-error sends the same bytes, as OpenSSL requires."""
        view = memoryview(payload)
        while True:
            event = select.POLLOUT
            try:
                sent = self.sock.send(view)
            except ssl.SSLWantWriteError:
                sent = 0
            except ssl.SSLWantReadError:
                sent, event = 0, select.POLLIN
            except OSError as exc:
                raise LinkLost(f"{self.name}: {exc}") from exc
            if sent == len(view):
                return
            view = view[sent:]
            self.wait(event)


def _handshake(sock: socket.socket, context: ssl.SSLContext, host: str, name: str) -> ssl.SSLSocket:
    """``sock`` wrapped in TLS, handshake done (blocking, within the socket's current timeout)."""
    try:
        return context.wrap_socket(sock, server_hostname=host)
    except ssl.SSLCertVerificationError as exc:
        sock.close()
        raise LinkLost(f"{name}: TLS certificate verification failed: {exc.verify_message}") from exc
    except (ssl.SSLError, OSError) as exc:
        sock.close()
        raise LinkLost(f"{name}: TLS handshake failed: {exc}") from exc


_CERT_REQS = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}


def tls_context(options: Mapping[str, Any]) -> ssl.SSLContext:
    """The client :class:`ssl.SSLContext` for a connection string's ``ssl_*`` options.

    Read as redis-py's ``SSLConnection`` reads them: the system's default context; ``ssl_cert_reqs``
    (default ``required``) is the verify mode; host names are checked unless ``ssl_check_hostname``
    is false or nothing is verified; ``ssl_certfile`` / ``ssl_keyfile`` are the client certificate;
    ``ssl_ca_certs`` / ``ssl_ca_path`` are trusted besides the system's CAs. A file that cannot be
    loaded is a :class:`~ladle.errors.ConfigError` naming the option.

    >>> tls_context({"ssl_cert_reqs": "none"}).verify_mode == ssl.CERT_NONE
    True
    """
    mode = _CERT_REQS[options.get("ssl_cert_reqs", "required")]
    context = ssl.create_default_context()
    context.check_hostname = bool(options.get("ssl_check_hostname", True)) and mode != ssl.CERT_NONE
    context.verify_mode = mode
    keyfile: str | None = options.get("ssl_keyfile")
    chain: str | None = options.get("ssl_certfile")  # (a key file without it is refused when parsed)
    cafile, capath = options.get("ssl_ca_certs"), options.get("ssl_ca_path")
    try:
        if chain:
            context.load_cert_chain(certfile=chain, keyfile=keyfile)
        if cafile or capath:
            context.load_verify_locations(cafile=cafile, capath=capath)
    except (OSError, ssl.SSLError) as exc:
        given = "ssl_certfile / ssl_keyfile" if chain else "ssl_ca_certs / ssl_ca_path"
        raise ConfigError(f"invalid configuration: online_store.connection_string: {given}: {exc}") from exc
    return context


def _command(*args: bytes) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join([b"$%d\r\n%b\r\n" % (len(a), a) for a in args])


def framed_gets(pre: bytes, suf: bytes, entities: Sequence[bytes]) -> bytes:
    """``GET <pre><entity><suf>`` for every entity, framed as RESP and concatenated.

    When every entity has the same length (fixed-format codes, the usual case) this is one C-level
    ``join``; otherwise one format per key.
    """
    if len(set(map(len, entities))) == 1:
        head = _GET + b"$%d\r\n" % (len(pre) + len(entities[0]) + len(suf)) + pre
        return head + (suf + b"\r\n" + head).join(entities) + suf + b"\r\n"
    fixed = len(pre) + len(suf)
    return b"".join([b"%b$%d\r\n%b%b%b\r\n" % (_GET, fixed + len(e), pre, e, suf) for e in entities])


class RawReads:
    """GET pipelines on raw sockets, one link per master, links reused across reads (thread-safe)."""

    def __init__(self, endpoint: RedisEndpoint, settings: IOSettings) -> None:
        self._endpoint = endpoint
        self._settings = settings
        #: Whether reads may take this path (every connection string the store accepts can, TLS included).
        self.usable = True
        self._link: type[_Link] = _TlsLink if endpoint.ssl else _Link
        self._context: ssl.SSLContext | None = None  # built on the first TLS link, then shared by all
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

    def _open(self, host: str, port: int) -> _Link:
        """A new link to one master (over TLS with the endpoint's context, built once)."""
        if self._link is _Link:
            return _Link(host, port, self._endpoint, self._settings)
        with self._lock:
            if self._context is None:
                self._context = tls_context(self._endpoint.options)
            context = self._context
        return self._link(host, port, self._endpoint, self._settings, context)

    def close(self) -> None:
        """Close every idle link (a link in use is closed when its read fails, or kept if it succeeds)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for links in idle:
            for link in links.values():
                link.close()

    def read(
        self, project: str, groups: Sequence[tuple[bytes, Sequence[bytes]]], by_crc: Sequence[int], nodes: Sequence[Any]
    ) -> tuple[list[bytes | None], list[int]]:
        """Values of ``groups`` (view id, entities) in order, and the positions a master redirected.

        ``nodes`` and ``by_crc`` come from :func:`routing`: the masters (objects with ``.host``,
        ``.port``, ``.name``) and the index of the one serving each raw CRC16. Positions count over
        all groups in order; redirected positions are left ``None``.
        """
        masters, payloads, counts, place = plan_reads(project, groups, by_crc, len(nodes))
        links = self._take()
        healthy = False
        try:
            written: list[_Link] = []
            for k, payload in zip(masters, payloads, strict=True):
                node = nodes[k]
                link = links.get(node.name)
                if link is None:
                    link = links[node.name] = self._open(node.host, node.port)
                link.send(payload)
                written.append(link)
            replies = self._collect(written, counts)
            healthy = True
        finally:
            if healthy:
                self._give(links)
            else:
                for link in links.values():
                    link.close()
        out, plain = place(replies)
        return out, ([] if plain else self._refused(out))

    def _refused(self, out: list[Any]) -> list[int]:
        """Positions of error replies a master redirected (set to ``None``); other errors raise."""
        redirected: list[int] = []
        failure = None
        for i, reply in enumerate(out):
            if isinstance(reply, hiredis.ReplyError):
                out[i] = None
                if str(reply).startswith(_ELSEWHERE):
                    redirected.append(i)
                else:
                    failure = failure or f"Redis Cluster at {self._endpoint.address} refused a read: {reply}"
        if failure is not None:
            raise BackendError(failure)
        return redirected

    def _collect(self, links: list[_Link], counts: list[int]) -> list[list[Any]]:
        """Every link's replies (``counts[n]`` for link ``n``), taken as they arrive.

        The links are tried in the order they were written (the first is the likeliest to have
        answered); only when some have nothing yet does ``poll`` wait, for the last-written of them.
        For the first :data:`_SPIN_NS` of a read (none by default) that wait does not sleep (``poll``
        with no timeout, again and again): waking a sleeping thread costs tens of µs on a VM, more
        than one master takes to answer a few keys. After that, ``poll`` sleeps within the socket
        timeout.
        """
        got: list[list[Any]] = [[] for _ in links]
        spin_until = time.perf_counter_ns() + _SPIN_NS if _SPIN_NS else 0
        waiting = list(range(len(links)))
        ready = waiting
        while True:
            for n in ready:
                link = links[n]
                if link.receive():
                    got[n] += iter(link.reader.gets, False)  # every complete reply (GET never answers an integer)
            waiting = [n for n in waiting if len(got[n]) < counts[n]]
            if not waiting:
                return got
            # Only the last-written master still waiting is watched: the others got their GETs
            # earlier, so by the time it answers they most likely have too, and the read wakes once
            # instead of once per master (a wake-up costs the master's write and this thread tens
            # of µs on a VM). If one of them has not answered yet, the next turn watches it.
            poller = select.poll()
            poller.register(links[waiting[-1]].fd, select.POLLIN)
            events: list[tuple[int, int]] = []
            while spin_until and not events:  # the opt-in spin: poll without sleeping, within its budget
                events = poller.poll(0)
                if time.perf_counter_ns() >= spin_until:
                    break
            if not events:
                events = poller.poll(int(self._settings.socket_timeout * 1000))
            if not events:
                raise LinkTimeout(f"no reply from {links[waiting[-1]].name} within {self._settings.socket_timeout} s")
            ready = waiting


#: What :func:`plan_reads` gives a read: the masters to write (indexes into :func:`routing`'s),
#: their pipelines, the replies each owes, and how to put the replies (a list per master, in that
#: order) back in request order, which also says whether every reply was a value or nil.
ReadPlan = tuple[Sequence[int], Sequence[bytes], list[int], Callable[[list[list[Any]]], tuple[list[Any], bool]]]


def plan_reads(
    project: str, groups: Sequence[tuple[bytes, Sequence[bytes]]], by_crc: Sequence[int], masters: int
) -> ReadPlan:
    """Route and frame a read of ``groups`` (view id, entities); see :data:`ReadPlan`.

    In C (:mod:`._cluster_plan`, ~1-2 µs for 100 keys) when it is built and the request fits its
    contract (bytes entities, no ``}`` in the hash tag, a byte routing table); otherwise in Python
    (:func:`plan_gets`, ~17 µs), with the same result.
    """
    if _native is not None and isinstance(by_crc, bytes):
        planned = _native.plan(
            key_prefix(project),
            [key_suffix(vid) for vid, _ in groups],
            [entities for _, entities in groups],
            by_crc,
            masters,
        )
        if planned is not None:
            used, payloads, counts, positions, total = planned
            return used, payloads, counts, partial(_native.place, total, positions)
    plan, total = plan_gets(project, groups, by_crc, masters)
    targets = [t for t, _ in plan.values()]
    return (
        list(plan),
        [payload[0] if len(payload) == 1 else b"".join(payload) for _, payload in plan.values()],
        [len(t) for t in targets],
        partial(_place, total, targets),
    )


def _place(total: int, targets: list[list[int]], replies: list[list[Any]]) -> tuple[list[Any], bool]:
    """:func:`plan_reads`' reordering in Python: each master's replies to its positions."""
    out: list[Any] = [None] * total
    plain = True
    for positions, values in zip(targets, replies, strict=True):
        if len(positions) != len(values):
            raise ValueError("a master's replies do not match its keys")
        for i, value in zip(positions, values, strict=True):
            out[i] = value
        plain = plain and _PLAIN.issuperset(map(type, values))
    return out, plain


def plan_gets(
    project: str, groups: Sequence[tuple[bytes, Sequence[bytes]]], by_crc: Sequence[int], masters: int
) -> tuple[dict[int, tuple[list[int], list[bytes]]], int]:
    """What a read of ``groups`` (view id, entities) sends each master, and how many values it reads.

    Per master index (the :func:`routing` table's), in the order first used: the positions it
    serves, counting over all groups in order, and its framed ``GET`` pipelines, one piece per
    group; a master answers its positions in that order.
    """
    plan: dict[int, tuple[list[int], list[bytes]]] = {}
    pre = key_prefix(project)
    routes: dict[int, tuple[list[list[bytes]], list[list[int]]]] = {}  # views often share the entities
    base = 0
    for vid, entities in groups:
        route = routes.get(id(entities))
        if route is None:
            route = routes[id(entities)] = by_master(project, entities, by_crc, masters)
        suf = key_suffix(vid)
        for k, (mine, positions) in enumerate(zip(*route, strict=True)):
            if mine:
                targets, payload = plan.setdefault(k, ([], []))
                targets += [base + i for i in positions] if base else positions
                payload.append(framed_gets(pre, suf, mine))
        base += len(entities)
    return plan, base


def by_master(
    project: str, entities: Sequence[bytes], by_crc: Sequence[int], masters: int
) -> tuple[list[list[bytes]], list[list[int]]]:
    """``entities`` grouped by the master serving their row keys, with their positions.

    The master comes from the project's CRC16 continued over each entity (:func:`routing`'s table
    is indexed by that raw CRC); an entity containing ``}`` ends the hash tag early, so such a batch
    takes Redis's general rule (:func:`.slots.row_slots`; a slot indexes the same table).
    """
    mine: list[list[bytes]] = [[] for _ in range(masters)]
    positions: list[list[int]] = [[] for _ in range(masters)]
    prefix = project.encode() + b":"
    codes: Iterable[int]
    if b"}" in prefix or b"}" in b"".join(entities):
        codes = row_slots(project, entities)
    else:
        codes = map(binascii.crc_hqx, entities, repeat(binascii.crc_hqx(prefix, 0)))
    # A plain loop: on CPython 3.11 it beats sorting by a key and C-level map() over bound methods.
    for i, entity, code in zip(range(len(entities)), entities, codes, strict=True):
        k = by_crc[code]
        mine[k].append(entity)
        positions[k].append(i)
    return mine, positions


_ROUTES: dict[int, tuple[Any, tuple[list[Any], Sequence[int]]]] = {}


def routing(cluster: Any) -> tuple[list[Any], Sequence[int]]:
    """The masters, and the index of the one serving each raw CRC16 (65,536 entries; slot = CRC % 16384).

    Indexing by the raw CRC spares the ``% 16384`` per key. Built once per slot map (keyed like
    :func:`.fanout.slot_table`, whose table it derives from). The table is ``bytes`` (64 KiB) for
    up to 255 masters: a list would be 512 KiB of pointers, and a read's 100 random lookups in it
    cost ~5 µs more (missed the CPU cache more often, measured on a busy 2-core machine).
    """
    table = slot_table(cluster)
    held = _ROUTES.get(id(cluster.nodes_manager))
    if held is not None and held[0] is table:
        return held[1]
    nodes: list[Any] = []
    index: dict[str, int] = {}
    by_slot = []
    for node in table:
        k = index.get(node.name)
        if k is None:
            k = index[node.name] = len(nodes)
            nodes.append(node)
        by_slot.append(k)
    by_crc: Sequence[int] = bytes(by_slot * 4) if len(nodes) < 256 else array("H", by_slot * 4)
    route = (nodes, by_crc)
    if len(_ROUTES) > 8:  # one entry per topology the process has seen (each rediscovery is a new one)
        _ROUTES.clear()
    _ROUTES[id(cluster.nodes_manager)] = (table, route)
    return route
