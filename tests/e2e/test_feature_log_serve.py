"""``ladle serve --workers 2`` with a logged feature service: every worker's queue reaches the log on SIGTERM.

The flush interval is an hour, so nothing is written while serving: the rows found afterwards are the
ones each worker flushed while draining. Request ids sent in ``X-Request-ID`` come back in the header
and in the log.
"""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest
import yaml

from e2e.test_serve_multiworker import two_workers
from unit.feature_log_repo import build

pytestmark = pytest.mark.slow
REQUESTS = 30


def test_workers_flush_their_logs_on_graceful_shutdown(tmp_path: Path) -> None:
    store = build(tmp_path, {"type": "sqlite", "path": "data/online.db"})
    config = {
        "project": store.project,
        "registry": {"path": "data/registry.db", "cache_ttl_seconds": 0},
        "online_store": {"type": "sqlite", "path": "data/online.db"},
        "offline_store": {"type": "duckdb"},
        "feature_server": {"feature_logging": {"flush_interval_secs": 3600}},
    }
    store.close()
    (tmp_path / "feature_store.yaml").write_text(yaml.safe_dump(config))
    with two_workers(tmp_path) as (process, port, _, output):
        body = {"feature_service": "price_model", "entities": {"commodity_code": ["gold"], "venue": ["ICE"]}}
        sent = [f"e2e-{i}" for i in range(REQUESTS)]
        for rid in sent:  # a new connection each: the kernel spreads them over both workers
            reply = httpx.post(f"http://127.0.0.1:{port}/get-online-features", json=body, headers={"X-Request-ID": rid})
            assert reply.status_code == 200 and reply.headers["x-request-id"] == rid
        log_dir = tmp_path / "data" / "feature_logs" / "price_model"
        assert not list(log_dir.glob("*.parquet"))  # nothing flushed while serving
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0, "".join(output)
    files = sorted(log_dir.glob("*.parquet"))
    assert files, "no log file after shutdown:\n" + "".join(output)
    ids = [i for f in files for i in pq.read_table(f, columns=["request_id"])["request_id"].to_pylist()]
    assert sorted(ids) == sorted(sent)
