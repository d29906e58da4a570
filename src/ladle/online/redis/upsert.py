"""The single-node write pipeline: pre-framed script calls, with a native fast path for new keys.

Every chunk of rows can go through the upsert script (:mod:`.scripts`), which compares timestamps on
the server. A script costs a few microseconds per row in Lua, though, while most rows of a first
load are new keys, which need no comparison at all. So a batch of ``FAST_PATH_ROWS`` rows or more
(no key expiry, no entity twice in the batch) is sent as ``MSETNX`` chunks: each sets all its keys
only if none of them exists, atomically, in native code. A chunk MSETNX refuses (some key exists) is
re-sent through the script. Whether to try at all is decided by a probe: the first such chunk of a
write is sent alone; if it is refused the rest of the write uses the script only. (A hint from the
view's previous large write skips the probe.) Newest-event-wins holds either way: MSETNX never
overwrites, and everything that could overwrite is compared on the server.

All commands are pipelined on one connection and replies are read in order, one batch behind: batch
k+1 is on its way before the replies of batch k are read, so the server always has work queued
while the client encodes. A batch is acknowledged to :class:`WriteRows` once all its replies are
read; an error reply ends the attempt (after reading everything outstanding).
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import ResponseError

from ladle.online.redis.scripts import UPSERT_SHA
from ladle.online.redis.write import FramedBatch, WriteRows

#: Batches of at least this many rows try MSETNX (for fewer, the uniqueness check is not worth it).
FAST_PATH_ROWS = 4096
_SHA_ARG = b"$40\r\n%b\r\n" % UPSERT_SHA
#: A command's pieces up to this size are joined and sent in one ``sendall`` (redis-py sends each
#: piece with its own system call; a stream's 100-row call is five pieces of a few kB).
JOIN_BYTES = 1 << 18
_UNIQUE, _MAYBE_REPEATED = b"$1\r\n1\r\n", b"$1\r\n0\r\n"


class _Pipeline:
    """Commands sent on one connection; replies handed to callbacks in FIFO order."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.pending: deque[Callable[[Any], None]] = deque()
        self.sent = 0

    def send(self, parts: list[Any], on_reply: Callable[[Any], None]) -> None:
        """Send one command's pieces (one buffer, one system call, when small); ``on_reply`` takes its reply."""
        if sum(len(part) for part in parts) <= JOIN_BYTES:
            parts = [b"".join(parts)]
        self.conn.send_packed_command(parts, check_health=False)
        self.pending.append(on_reply)
        self.sent += 1

    def drain(self, keep: int = 0) -> None:
        """Read outstanding replies but the last ``keep``.

        An error reply (NOSCRIPT after a restart, OOM, ...) ends the attempt: every outstanding reply
        is read, so the connection stays usable, and the first error is raised.
        """
        while len(self.pending) > keep:
            on_reply = self.pending.popleft()
            try:
                reply = self.conn.read_response()
            except ResponseError as exc:
                while self.pending:
                    self.pending.popleft()
                    with contextlib.suppress(ResponseError):
                        self.conn.read_response()
                raise exc from None
            on_reply(reply)


@dataclass(eq=False)
class _Sent:
    """What this attempt has sent of one batch and is still waiting for."""

    batch: FramedBatch
    refused: list[tuple[int, int]] = field(default_factory=list)  # chunks MSETNX refused
    outstanding: int = 0  # replies not read yet
    resent: bool = False  # refused chunks went out again through the script


class Upsert:
    """One attempt at writing a :class:`WriteRows` through one connection."""

    def __init__(self, conn: Any, chunk_rows: int, ttl_ms: int, fast_hint: bool = False) -> None:
        self.pipe = _Pipeline(conn)
        self.chunk_rows = chunk_rows
        self.ttl_arg = b"$%d\r\n%d\r\n" % (len(b"%d" % ttl_ms), ttl_ms)
        # "probe" → "fast" or "script"; a hint (the last large write of this view went fast) skips the probe
        self.mode = "script" if ttl_ms else "fast" if fast_hint else "probe"
        self.tried = self.refused = 0  # MSETNX chunks sent / refused

    @property
    def went_fast(self) -> bool:
        """Whether most chunks of this write were new keys (a hint for the view's next write)."""
        return self.tried > 0 and self.refused * 2 < self.tried

    def run(self, rows: WriteRows) -> None:
        """Send every batch of ``rows``, acknowledging each to ``rows`` once fully answered.

        Batch k+1 is sent before the replies of batch k are read, so the server always has work
        queued while the client reads replies and encodes the next batch.
        """
        queue: deque[_Sent] = deque()
        for batch in rows.framed():
            before = self.pipe.sent
            queue.append(self._start(batch))
            # read everything but this batch's replies (a probe may have read some of them already)
            self.pipe.drain(keep=min(len(self.pipe.pending), self.pipe.sent - before))
            self._progress(queue, rows)
        while queue:
            self.pipe.drain()
            self._progress(queue, rows)

    def _progress(self, queue: deque[_Sent], rows: WriteRows) -> None:
        """Re-send what MSETNX refused in answered batches; acknowledge finished ones, in order."""
        for sent in queue:
            if sent.outstanding == 0 and not sent.resent:
                for chunk in sent.refused:
                    self._script(sent, *chunk, unique=True)
                sent.resent = True
        while queue and queue[0].resent and queue[0].outstanding == 0:
            rows.acknowledge(queue.popleft().batch.written)

    def _chunks(self, rows: int) -> list[tuple[int, int]]:
        return [(s, min(s + self.chunk_rows, rows)) for s in range(0, rows, self.chunk_rows)]

    def _start(self, batch: FramedBatch) -> _Sent:
        """Send a batch's first attempt: MSETNX chunks (fast / probe) or script calls."""
        sent = _Sent(batch)
        chunks = self._chunks(batch.rows)
        unique = batch.rows >= FAST_PATH_ROWS and batch.unique()
        if self.mode == "script" or not unique:
            for chunk in chunks:
                self._script(sent, *chunk, unique=unique)
            return sent
        for i, chunk in enumerate(chunks):
            self._msetnx(sent, chunk)
            if self.mode == "probe":
                self.pipe.drain()
                self.mode = "script" if sent.refused else "fast"
                if sent.refused:
                    for rest in chunks[i + 1 :]:
                        self._script(sent, *rest, unique=True)
                    break
        return sent

    def _msetnx(self, sent: _Sent, chunk: tuple[int, int]) -> None:
        start, stop = chunk
        pairs, offsets = sent.batch.pairs()
        head = b"*%d\r\n$6\r\nMSETNX\r\n" % (2 * (stop - start) + 1)

        def on_reply(reply: Any) -> None:
            sent.outstanding -= 1
            if int(reply) == 1:
                sent.batch.written += stop - start
            else:
                sent.refused.append(chunk)
                self.refused += 1

        self.pipe.send([head, pairs[offsets[start] : offsets[stop]]], on_reply)
        sent.outstanding += 1
        self.tried += 1

    def _script(self, sent: _Sent, start: int, stop: int, *, unique: bool) -> None:
        """One upsert script call; ``unique`` tells the script no key repeats (cheaper)."""
        batch = sent.batch
        rows = b"%d" % (stop - start)
        head = b"*%d\r\n$7\r\nEVALSHA\r\n%b$%d\r\n%b\r\n" % (2 * (stop - start) + 5, _SHA_ARG, len(rows), rows)
        key_data, key_offsets, blob_data, blob_offsets = batch.separate()
        keys = key_data[key_offsets[start] : key_offsets[stop]]
        blobs = blob_data[blob_offsets[start] : blob_offsets[stop]]

        def on_reply(reply: Any) -> None:
            sent.outstanding -= 1
            batch.written += int(reply)

        self.pipe.send([head, keys, self.ttl_arg, _UNIQUE if unique else _MAYBE_REPEATED, blobs], on_reply)
        sent.outstanding += 1
