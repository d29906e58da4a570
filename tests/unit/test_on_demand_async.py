"""``push_async`` on an embedded store: the same rows written as ``push`` writes, without blocking the loop."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

from unit.server_repo import build_repo


def test_push_async_writes_like_push(tmp_path: Path) -> None:
    store = build_repo(tmp_path).store
    try:
        now = datetime.now(UTC).replace(microsecond=0).isoformat()
        rows = {"commodity_code": ["copper"], "current_price": [4.25], "volume_24h": [10], "event_timestamp": [now]}

        async def both() -> tuple[int | None, int]:
            ticks = 0

            async def ticker() -> None:
                nonlocal ticks
                while True:
                    ticks += 1
                    await asyncio.sleep(0)

            task = asyncio.create_task(ticker())
            written = await store.push_async("price_push", {**rows, "created": [now]})
            task.cancel()
            return written, ticks

        written, ticks = asyncio.run(both())
        assert written == 1
        assert ticks > 0  # the loop kept running while the push was written in a worker thread
        got = store.get_online_features(["live_prices:current_price"], [{"commodity_code": "copper"}]).to_dict()
        assert got["current_price"] == [4.25]
    finally:
        store.close()
