"""A write to Redis Cluster never imports pandas (~0.17 s on a 2-vCPU VM, paid inside the first
write of every ``ladle materialize`` process): pyarrow's ``pa.array`` and ``Array.to_numpy`` import it
on first use, so the cluster writer keeps its slot order in NumPy (``cluster_write.py``). Checked in
a fresh interpreter, on the session's real 3-master cluster, with MSETNX (new keys) then the upsert
script (existing keys) as W1b and a second materialization run them."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pyarrow as pa
import pytest

from backends.test_redis_cluster_reads import CODES, rows

pytestmark = pytest.mark.redis_cluster

# The rows come from an Arrow IPC file the test writes: building them from Python lists (pa.array)
# would import pandas itself.
PROBE = """
import sys, pyarrow as pa
from backends.test_redis_cluster_reads import VIEW, open_store
store = open_store(sys.argv[1])
with pa.OSFile(sys.argv[3]) as source:
    table = pa.ipc.open_file(source).read_all()
assert "pandas" not in sys.modules, "imported before the write"
try:
    store.write(sys.argv[2], VIEW, table)   # new keys: MSETNX
    store.write(sys.argv[2], VIEW, table)   # existing keys: the upsert script
    print("pandas" in sys.modules)
finally:
    store.teardown(sys.argv[2], [])
    store.close()
"""


def test_a_cluster_write_does_not_import_pandas(redis_cluster_nodes: str, tmp_path: Path) -> None:
    tests = Path(__file__).resolve().parents[1]
    project = f"np{uuid.uuid4().hex[:10]}"
    table = rows(CODES)
    path = tmp_path / "rows.arrow"
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    done = subprocess.run(
        [sys.executable, "-c", PROBE, redis_cluster_nodes, project, str(path)],
        check=False,
        capture_output=True,
        text=True,
        cwd=tests,
        env={"PYTHONPATH": str(tests), "PATH": "/usr/bin:/bin"},
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
