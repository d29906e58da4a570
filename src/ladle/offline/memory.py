"""Give memory freed by the engines back to the system between the stages of a batch job.

DuckDB allocates through its own bundled jemalloc, which keeps freed pages resident until its next
allocation needs them (no background purging by default). After a large join the process holds
those pages although DuckDB holds no data: measured at W6 (``bench.w6_scale``), ~340 MB resident in
DuckDB's allocator with 1 MB allocated after stage 1 of the partitioned retrieval, which then stayed
resident under the result's Arrow and pandas copies (other allocators, which cannot reuse them), and
set the job's peak. Arrow's pool (mimalloc) keeps freed pages in the same way.

:func:`release_engine_memory` returns both: it purges every arena of DuckDB's allocator (through the
``mallctl`` the DuckDB library exports, when it does) and asks Arrow's default pool to release what it
does not use. Both take a few milliseconds. Where DuckDB is built without its own jemalloc (other
platforms), only the Arrow part runs; a failure to purge is never an error.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Callable

__all__ = ["release_engine_memory"]

#: jemalloc's ``MALLCTL_ARENAS_ALL`` (4096): the pseudo arena index meaning every arena.
_ALL_ARENAS_PURGE = b"arena.4096.purge"


@functools.cache
def _duckdb_mallctl() -> Callable[..., int] | None:
    """``mallctl(name, oldp, oldlenp, newp, newlen)`` of DuckDB's jemalloc, or None (not exported)."""
    try:
        import _duckdb  # the native module of the duckdb package

        function = ctypes.CDLL(_duckdb.__file__).duckdb_je_mallctl
    except (ImportError, OSError, AttributeError):  # no bundled jemalloc (or no symbol): nothing to purge
        return None
    pointer = ctypes.c_void_p
    function.argtypes = [ctypes.c_char_p, pointer, pointer, pointer, ctypes.c_size_t]
    function.restype = ctypes.c_int
    return function


def release_engine_memory() -> None:
    """Return the pages DuckDB's allocator and Arrow's default pool hold but no longer use to the system."""
    mallctl = _duckdb_mallctl()
    if mallctl is not None:
        mallctl(_ALL_ARENAS_PURGE, None, None, None, 0)
    import pyarrow as pa

    pa.default_memory_pool().release_unused()
