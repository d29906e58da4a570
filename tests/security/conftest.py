"""The attack suite's servers: ``ladle serve`` as a subprocess (its RSS is what we measure), one per engine.

The suite's servers use short timeouts (so the suite stays fast) and a 16 MiB worker byte budget
(under the suite's 64 MB memory bound); every other limit keeps its default.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from ladle import FeatureStore
from security.serve_process import Served, fd_limit, serve
from unit.server_repo import PROJECT, build_repo

BIG = 64 << 10  # bytes of the `code` feature of station 3: large answers from small requests
SUITE_SETTINGS = [
    "--grpc-handshake-timeout", "2", "--grpc-stall-timeout", "2", "--grpc-idle-timeout", "30",
    "--grpc-worker-buffer-bytes", str(16 << 20), "--max-entities-per-request", "10000",
]  # fmt: skip


@pytest.fixture(scope="session")
def attack_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The server tests' repo plus station 3, whose ``code`` is 64 KiB."""
    path = tmp_path_factory.mktemp("attack_repo")
    build_repo(path).store.close()
    store = FeatureStore(repo_path=path)
    view = store.snapshot(allow_cache=False).feature_view("station_features")
    when = datetime.now(UTC) - timedelta(hours=1)
    table = pa.table({
        "station_id": pa.array([3], pa.int64()), "name": ["BIG"], "active": [True],
        "elevation": pa.array([1], pa.int32()), "readings": pa.array([[]], pa.list_(pa.float64())),
        "code": [bytes(BIG)], "installed": pa.array([when], pa.timestamp("us", tz="UTC")),
        "event_timestamp": pa.array([when], pa.timestamp("us", tz="UTC")),
    })  # fmt: skip
    store.online_store.write(PROJECT, view, table)
    store.close()
    return path


@pytest.fixture(scope="module", params=["ladle", "grpcio"])
def grpc_engine(request: pytest.FixtureRequest) -> str:
    """Every attack against both engines; ``xfail_for`` marks where grpcio falls over."""
    return str(request.param)


@pytest.fixture(scope="module")
def server(attack_repo: Path, grpc_engine: str) -> Iterator[Served]:
    """One ``ladle serve`` per engine, with 256 file descriptors (the slowloris test needs a small limit)."""
    with serve(attack_repo, "--grpc-engine", grpc_engine, *SUITE_SETTINGS, preexec=fd_limit(256)) as served:
        yield served


def xfail_for(request: pytest.FixtureRequest, engine: str, reason: str) -> None:
    """Mark the running test strict-xfail when it runs against ``engine`` (a measured gap, kept honest)."""
    if request.getfixturevalue("grpc_engine") == engine:
        request.applymarker(pytest.mark.xfail(strict=True, reason=reason))
