"""The cluster-floor what-if (``bench/cluster_floor.py``) on the real 3-master cluster: its bare reads
answer exactly what the store's own read path answers, it refuses a request it was not shown, it gives
the store its read path back; and ``bench.w2_paired --cluster-floor`` runs end to end."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from bench.cluster_floor import BareClusterReads
from bench.data import ensure_ticks, entity_codes
from bench.w2_online import W2B_REFS, draw_rows
from bench.w2_paired import _store, main


@pytest.fixture(scope="module")
def ticks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bench's default ticks file, made once for this module (~1 s)."""
    return ensure_ticks(tmp_path_factory.mktemp("cluster_floor_data"))


def test_bare_reads_answer_what_the_store_answers(redis_cluster_nodes: str, ticks: Path) -> None:
    codes = entity_codes(10_000).to_pylist()
    rng = random.Random(3)
    requests = [draw_rows(rng, codes, n, "records") for n in (100, 1, 37)]
    requests.append([{"commodity_code": "NOT-A-CODE"}, *requests[0][:5]])  # a missing entity, then known ones
    with _store(ticks, "redis_cluster", redis_cluster_nodes, random.Random(1)) as store:
        expected = [store.get_online_features(W2B_REFS, r).to_dict() for r in requests]
        io = store.online_store._io
        bare = BareClusterReads(store)
        try:
            assert io.read_rows == bare.read_rows
            bare.prepare(lambda r: store.get_online_features(W2B_REFS, r), requests)
            for _ in range(2):  # the same plans serve again
                assert [store.get_online_features(W2B_REFS, r).to_dict() for r in requests] == expected
            with pytest.raises(KeyError):  # never shown: no plan, no silent fall-back to the real path
                store.get_online_features(W2B_REFS, draw_rows(rng, codes, 10, "records"))
        finally:
            bare.close()
        assert "read_rows" not in vars(io)  # the store's own method again
        assert store.get_online_features(W2B_REFS, requests[0]).to_dict() == expected[0]


def test_w2_paired_cluster_floor_through_main(
    redis_address: str, redis_cluster_nodes: str, ticks: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--data", str(ticks.parent), "--redis", redis_address, "--redis-nodes", redis_cluster_nodes]
    options = ["--workloads", "W2b", "--processes", "--cluster-floor", "--pairs", "3", "--run", "3", "--settle", "1"]
    assert main([*argv, *options, "--warmup", "2", "--block", "3", "--resamples", "50"]) == 0
    (result,) = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert result["cluster_floor"] is True and result["processes"] is True and result["pairs"] == 6
    assert "floor" in result["arms"]["cluster"] and result["cluster_us"]["min"] > 0
    with pytest.raises(SystemExit):
        main([*argv, "--control", "--cluster-floor"])  # no cluster to replace the reads of
