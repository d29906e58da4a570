"""The C accelerator of Redis Cluster reads (``online/redis/_cluster_plan.c``) against the Python path.

``plan_reads`` routes, frames and reorders a cluster read in C when it can and in Python otherwise;
both must give the same masters, the same bytes on the wire and the same values back. Two oracles
besides the Python path: redis-py's own ``key_slot`` (every framed key is sent to the master of its
slot), and hiredis parsing each pipeline back into ``GET <key>`` commands. Inputs outside the C
path's contract must fall back (``plan`` returns ``None``) or raise a clear error, never misroute.
"""

from __future__ import annotations

import contextlib
import os
import random
import sys
import sysconfig
from pathlib import Path
from typing import Any

import hiredis
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.crc import key_slot

from ladle.online.redis import cluster_read
from ladle.online.redis.keys import key_prefix, key_suffix

native = cluster_read._native
needs_native = pytest.mark.skipif(
    native is None and os.environ.get("CI") != "true",
    reason="C ACCELERATOR NOT BUILT: ladle.online.redis._cluster_plan (no C compiler at install?)",
)


def table(masters: int, seed: int = 0) -> bytes:
    """A routing table over raw CRCs: slot s (= crc % 16384) served by a shuffled owner."""
    rng = random.Random(seed)
    owners = [rng.randrange(masters) for _ in range(16384)]
    return bytes(owners) * 4


def python_plan(project: str, groups: list[tuple[bytes, list[bytes]]], by_crc: bytes, masters: int) -> Any:
    saved = cluster_read._native
    cluster_read._native = None
    try:
        return cluster_read.plan_reads(project, groups, by_crc, masters)
    finally:
        cluster_read._native = saved


def commands(payload: bytes) -> list[list[bytes]]:
    reader = hiredis.Reader()
    reader.feed(payload)
    return list(iter(reader.gets, False))


def by_master(plan: Any) -> dict[int, tuple[bytes, int]]:
    masters, payloads, counts, _ = plan
    return {k: (p, c) for k, p, c in zip(masters, payloads, counts, strict=True)}


def fake_replies(plan: Any, rng: random.Random) -> dict[int, list[Any]]:
    """A reply per key, by master index: some values, some nils."""
    return {
        k: [rng.choice([None, b"v%d" % rng.randrange(10**6)]) for _ in range(c)]
        for k, (_, c) in by_master(plan).items()
    }


def in_order(plan: Any, replies: dict[int, list[Any]]) -> list[list[Any]]:
    """``replies`` as ``plan``'s reordering takes them: one list per master, in the plan's order."""
    return [replies[k] for k in plan[0]]


def test_the_accelerator_is_built_under_ci() -> None:
    """CI installs with a C compiler: the accelerator must be there (elsewhere it is optional)."""
    if os.environ.get("CI") != "true" and native is None:
        pytest.skip("C ACCELERATOR NOT BUILT: ladle.online.redis._cluster_plan (no C compiler at install?)")
    assert native is not None
    assert Path(native.__file__ or "").name.endswith(sysconfig.get_config_var("EXT_SUFFIX"))


entity = st.binary(min_size=0, max_size=24).filter(lambda b: b"}" not in b)


@needs_native
@settings(max_examples=300, deadline=None)
@given(
    masters=st.integers(1, 7),
    lists=st.lists(st.lists(entity, max_size=40), min_size=1, max_size=4),
    shape=st.lists(st.integers(0, 3), min_size=1, max_size=6),
    seed=st.integers(0, 2**16),
)
def test_native_plan_equals_python_and_redis_slots(
    masters: int, lists: list[list[bytes]], shape: list[int], seed: int
) -> None:
    """Groups reuse entity lists (as a request's views do) or not; every byte and position agrees."""
    project = f"proj_{seed}"
    groups = [(b"%012x" % (i * 7919 + seed), lists[j % len(lists)]) for i, j in enumerate(shape)]
    by_crc = table(masters, seed)
    fast = cluster_read.plan_reads(project, groups, by_crc, masters)
    slow = python_plan(project, groups, by_crc, masters)
    assert by_master(fast) == by_master(slow)
    assert list(fast[0]) == sorted(fast[0])  # masters in index order
    # every framed key goes to the master of its slot by Redis's own rule
    slot_owner = by_crc[:16384]
    for k, (payload, count) in by_master(fast).items():
        sent = commands(payload)
        assert len(sent) == count
        for command in sent:
            assert command[0] == b"GET"
            assert slot_owner[key_slot(command[1])] == k
    # the keys, in request order, are exactly the request's
    rng = random.Random(seed)
    replies = fake_replies(fast, rng)
    values, plain = fast[3](in_order(fast, replies))
    assert (values, plain) == slow[3](in_order(slow, replies))
    assert plain
    keys_back, _ = fast[3]([[c[1] for c in commands(p)] for p in fast[1]])
    pre = key_prefix(project)
    assert keys_back == [pre + e + key_suffix(vid) for vid, entities in groups for e in entities]


@needs_native
def test_error_replies_are_not_plain() -> None:
    """An error reply (a redirection) is placed like a value, and the read is told it is not plain."""
    by_crc = table(3)
    groups = [(b"0123456789ab", [b"CMD%05d" % i for i in range(50)])]
    plan = cluster_read.plan_reads("p", groups, by_crc, 3)
    replies = {k: [b"x"] * c for k, (_, c) in by_master(plan).items()}
    replies[plan[0][-1]][-1] = hiredis.ReplyError("MOVED 42 127.0.0.1:7000")
    values, plain = plan[3](in_order(plan, replies))
    assert not plain
    assert sum(isinstance(v, hiredis.ReplyError) for v in values) == 1
    slow = python_plan("p", groups, by_crc, 3)
    assert slow[3](in_order(slow, replies)) == (values, plain)


@needs_native
@pytest.mark.parametrize(
    ("project", "entities"),
    [
        ("p", [b"ok", b"a}b"]),  # a '}' ends the hash tag early: Redis's general rule applies
        ("p", [b"ok", "text"]),  # not bytes
    ],
)
def test_outside_the_contract_the_python_path_answers(project: str, entities: list[Any]) -> None:
    by_crc = table(3)
    assert native is not None
    assert native.plan(key_prefix(project), [b"}:v"], [entities], by_crc, 3) is None
    if all(isinstance(e, bytes) for e in entities):  # the Python path routes it by Redis's rule
        plan = cluster_read.plan_reads(project, [(b"v" * 12, entities)], by_crc, 3)
        for k, (payload, _) in by_master(plan).items():
            assert all(by_crc[key_slot(c[1])] == k for c in commands(payload))


@needs_native
def test_a_wide_routing_table_takes_the_python_path() -> None:
    """300 masters need a 16-bit table (an ``array``), which the C path does not take."""
    from array import array

    wide = array("H", [s % 300 for s in range(16384)] * 4)
    plan = cluster_read.plan_reads("p", [(b"v" * 12, [b"CMD1", b"CMD2"])], wide, 300)
    assert sorted(plan[0]) == sorted({key_slot(b"{p:CMD1}") % 300, key_slot(b"{p:CMD2}") % 300})


@needs_native
@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((b"{p:", [b"}:v"], [[b"a"]], b"\0" * 100, 3), "65,536"),
        ((b"{p:", [b"}:v"], [[b"a"]], b"\5" * 65536, 3), "beyond masters"),
        ((b"{p:", [b"}:v"], [[b"a"]], b"\0" * 65536, 0), "1..255"),
        ((b"p:", [b"}:v"], [[b"a"]], b"\0" * 65536, 3), "start with"),
        ((b"{p:", [b"}:v", b"}:w"], [[b"a"]], b"\0" * 65536, 3), "one suffix per"),
    ],
)
def test_plan_refuses_bad_arguments(args: tuple[Any, ...], message: str) -> None:
    assert native is not None
    with pytest.raises(ValueError, match=message):
        native.plan(*args)


@needs_native
def test_place_refuses_replies_that_do_not_match() -> None:
    assert native is not None
    plan = native.plan(b"{p:", [b"}:v"], [[b"a", b"b", b"c"]], b"\0" * 65536, 1)
    assert plan is not None
    _, _, counts, positions, total = plan
    assert counts == [3] and total == 3
    assert native.place(total, positions, [[b"1", b"2", b"3"]]) == ([b"1", b"2", b"3"], True)
    with pytest.raises(ValueError, match="fewer replies"):
        native.place(total, positions, [[b"1", b"2"]])
    with pytest.raises(ValueError, match="more replies"):
        native.place(total, positions, [[b"1", b"2", b"3", b"4"]])
    with pytest.raises(ValueError, match="beyond total"):
        native.place(2, positions, [[b"1", b"2", b"3"]])
    with pytest.raises(TypeError):
        native.place(total, positions, [(b"1", b"2", b"3")])
    with pytest.raises(ValueError, match="a master's replies"):  # the Python path checks the same
        cluster_read._place(3, [[0, 1, 2]], [[b"1", b"2"]])


@needs_native
def test_an_empty_read_plans_nothing() -> None:
    plan = cluster_read.plan_reads("p", [(b"v" * 12, [])], table(3), 3)
    assert list(plan[0]) == [] and plan[2] == []
    assert plan[3]([]) == ([], True)


def test_the_build_hook_compiles_the_accelerator(tmp_path: Path) -> None:
    """``hatch_build.compile_extension`` builds an importable module with the machine's C compiler,
    and reports (rather than raises) a build that fails, so an install falls back to Python."""
    import importlib.util
    import shutil

    from hatch_build import SOURCE, compile_extension

    if shutil.which((sysconfig.get_config_var("CC") or "cc").split()[0]) is None:
        if os.environ.get("CI") == "true":
            pytest.fail("no C compiler under CI")
        pytest.skip("NO C COMPILER: the accelerator cannot be built here")
    root = Path(__file__).resolve().parents[2]
    target = tmp_path / ("_cluster_plan" + sysconfig.get_config_var("EXT_SUFFIX"))
    assert compile_extension(root / SOURCE, target) is None
    spec = importlib.util.spec_from_file_location("ladle.online.redis._cluster_plan", target)
    assert spec is not None and spec.loader is not None
    built = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(built)
    planned = built.plan(b"{p:", [b"}:v"], [[b"a"]], bytes(65536), 1)
    assert planned[1] == [b"*2\r\n$3\r\nGET\r\n$7\r\n{p:a}:v\r\n"]
    broken = tmp_path / "broken.c"
    broken.write_text("this is not C;\n")
    error = compile_extension(broken, tmp_path / "broken.so")
    assert error is not None and "broken.c" in error
    assert not (tmp_path / "broken.so").exists()


def test_ladle_no_native_turns_the_accelerator_off() -> None:
    """``LADLE_NO_NATIVE=1`` at run time: the Python path, whatever is built (for comparisons, debugging)."""
    import subprocess
    import sys

    probe = "from ladle.online.redis import cluster_read as c; print(c._native is None)"
    env = {**os.environ, "LADLE_NO_NATIVE": "1"}
    off = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    assert off.stdout.strip() == "True"
    if native is not None:
        env["LADLE_NO_NATIVE"] = "0"
        on = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
        assert on.stdout.strip() == "False"


@needs_native
def test_no_reference_leaks_on_success_or_error_paths() -> None:
    """50,000 rounds of plans, placements and refused arguments leave the process's resident memory
    where it was (a leaked 100-key plan per round would be hundreds of MB)."""
    assert native is not None
    by_crc = table(3)
    entities = [b"CMD%05d" % i for i in range(100)]
    bad_plans: list[tuple[Any, ...]] = [
        (b"{p:", [b"}:v"], [entities], b"\0" * 10, 3),
        (b"{p:", [b"}:v"], [[b"a", "s"]], by_crc, 3),
        (b"{p:", [b"}:v"], [[b"a}"]], by_crc, 3),
        (b"{p:", [1], [entities], by_crc, 3),
    ]

    suffixes, lists, value = [b"}:v1", b"}:v2"], [entities, entities], b"x" * 10

    def round_trip() -> None:
        planned = native.plan(b"{proj:", suffixes, lists, by_crc, 3)
        assert planned is not None
        _, _, counts, positions, total = planned
        replies: list[list[Any]] = [[value] * c for c in counts]
        replies[0][0] = hiredis.ReplyError("MOVED 1 127.0.0.1:1")
        assert native.place(total, positions, replies)[1] is False
        for bad in bad_plans:
            with contextlib.suppress(ValueError, TypeError):
                native.plan(*bad)
        for args in ((total, positions, replies[:1]), (2, positions, replies)):
            with contextlib.suppress(ValueError, TypeError):
                native.place(*args)

    held = (suffixes, suffixes[0], lists, entities, entities[0], by_crc, value, None)  # None: place() fills with it
    counts_before = [sys.getrefcount(o) for o in held]
    for _ in range(5_000):
        round_trip()
    assert [sys.getrefcount(o) for o in held] == counts_before  # no reference kept to an argument
    before = _resident_bytes()
    for _ in range(50_000):
        round_trip()
    assert _resident_bytes() - before < 4 << 20


def _resident_bytes() -> int:
    """This process's resident memory now (not its peak, which an earlier test may have set)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")
