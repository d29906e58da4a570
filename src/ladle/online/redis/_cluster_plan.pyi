"""Type stubs of the optional C accelerator (``_cluster_plan.c``; see ``cluster_read.plan_reads``)."""

from collections.abc import Sequence
from typing import Any

def plan(
    prefix: bytes, suffixes: Sequence[bytes], entity_lists: Sequence[Sequence[bytes]], by_crc: bytes, masters: int, /
) -> tuple[list[int], list[bytes], list[int], bytes, int] | None: ...
def place(total: int, positions: bytes, replies: list[list[Any]], /) -> tuple[list[Any], bool]: ...
