"""Offline store factories for the conformance suite (``tests/conformance/test_offline_*.py``).

A factory stores the test's source tables in its backend and returns an :class:`OfflineSetup`: the
store (opened from an ``offline_store:`` block, as ``feature_store.yaml`` would), one
``DataSource`` per table and the ``RepoConfig`` it was opened from (so a ``FeatureStore`` can be
built on the same data). Its first parameter is ``tables``; every other parameter is a pytest
fixture name (``tmp_path``, a server address fixture, ...) resolved by ``conftest.py``.

The factory contract (every backend):

* **Each call is isolated.** A test may call the ``offline`` builder several times (a hypothesis
  property test calls it once per example, and releases each setup before the next), so every
  call must store its tables in a fresh place of its own: unique table names, namespace or
  database per call, never a fixed name. Its clean-ups (dropping what it created, closing
  connections) go in ``OfflineSetup.cleanup``; they run last first, once (:func:`release`).
* A parameter named ``tmp_path`` is a **new empty directory for each call** (from
  ``tmp_path_factory``), not the test's own ``tmp_path``; open the store with
  ``open_store(tmp_path, ...)`` (or a directory below it), so ``config.repo_path`` is the call's own
  (the suite checks that a failed call changed no file below it). Other fixtures (server
  addresses) are shared by the calls of one test.
* Every table becomes a source named like the table, **also a table of zero rows** (an existing,
  empty table with the given columns: the suite joins and pulls such sources). The suite derives a source that does not
  exist from a returned one by appending ``_absent`` to its ``name`` and to its ``path`` or
  ``table`` (:func:`absent_source`), so each source must have one of those locations.
* Entity-frame columns whose name starts with ``__ladle_`` are reserved for the stores' own use:
  ``historical`` rejects them with a ``RequestError``.

Adding a backend (say ``iceberg``):

1. write ``offline_iceberg.py`` next to this file with ``make_iceberg(tables, tmp_path, ...)`` and,
   if some cases cannot pass yet, ``GAPS = {"<test name>": "reason"}`` (run as strict xfails);
2. add ``pytest.param("iceberg", marks=pytest.mark.iceberg)`` to :data:`OFFLINE_BACKENDS` and the
   ``iceberg`` marker to ``[tool.pytest.ini_options] markers`` in pyproject.toml.

A listed backend whose module or factory does not exist is skipped with a loud reason (a failure
under ``CI=true``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ladle import FileSource
from ladle.config import RepoConfig, load_config
from ladle.definitions import DataSource, source_from_spec
from ladle.offline.base import OfflineStore, open_offline_store

#: Every offline backend of the suite, with its marker (``pytest -m duckdb``).
OFFLINE_BACKENDS = [
    pytest.param("duckdb", marks=pytest.mark.duckdb),
    pytest.param("iceberg", marks=pytest.mark.iceberg),
    pytest.param("iceberg_pg", marks=[pytest.mark.iceberg, pytest.mark.postgres]),
    pytest.param("doris", marks=[pytest.mark.doris, pytest.mark.mariadb]),
]


@dataclass(frozen=True)
class SourceTable:
    """One source's rows as Arrow, and which columns are its event and created timestamps.

    Timestamp columns may use any unit and zone (or none: naive = UTC); a backend that cannot
    store a type as given converts it to the same instants.
    """

    table: pa.Table
    timestamp_field: str = "event_ts"
    created_timestamp_column: str = ""


@dataclass
class OfflineSetup:
    """A store holding the test's tables, and the sources to query them by."""

    store: OfflineStore
    sources: dict[str, DataSource]  # table name → source
    config: RepoConfig  # what ``store`` was opened from (SQLite registry and online store in the repo)
    cleanup: list[Callable[[], None]] = field(default_factory=list)  # run by ``release``, last first


def release(setup: OfflineSetup) -> None:
    """Run the setup's clean-ups, last first, each once (a second call does nothing).

    Every step runs even if an earlier one fails; the first failure is raised afterwards.
    """
    error: Exception | None = None
    while setup.cleanup:
        step = setup.cleanup.pop()
        try:
            step()
        except Exception as exc:  # run the other steps, then raise the first failure
            error = error or exc
    if error is not None:
        raise error


def absent_source(source: DataSource) -> DataSource:
    """``source`` renamed to a place that holds nothing: ``_absent`` added to its name and path or table."""
    spec = source.to_spec()
    spec["name"] = f"{spec['name']}_absent"
    if spec.get("path"):
        path = str(spec["path"])
        spec["path"] = path.rstrip("/") + "_absent" + ("/" if path.endswith("/") else "")
    elif spec.get("table"):
        spec["table"] = f"{spec['table']}_absent"
    else:
        raise AssertionError(f"cannot derive a missing source from {source!r}: it has neither a path nor a table")
    return source_from_spec(spec)


Factory = Callable[..., OfflineSetup]
#: What a test gets from the ``offline`` fixture: tables in, a store holding them out.
OfflineBuilder = Callable[[Mapping[str, SourceTable]], OfflineSetup]


def open_store(repo_path: Path, offline_block: Mapping[str, Any]) -> tuple[OfflineStore, RepoConfig]:
    """Open the store an ``offline_store:`` block configures, in a repo at ``repo_path``."""
    config = load_config(
        {
            "project": "conformance",
            "registry": "registry.db",
            "online_store": {"type": "sqlite", "path": "online.db"},
            "offline_store": dict(offline_block),
        },
        repo_path,
    )
    return open_offline_store(config), config


# -- DuckDB (Parquet) ---------------------------------------------------------------------------

#: Cases the DuckDB store cannot pass (test name → reason).
DUCKDB_GAPS: dict[str, str] = {}


def make_duckdb(tables: Mapping[str, SourceTable], tmp_path: Path) -> OfflineSetup:
    """Each table as a directory source ``data/<name>/`` of two Parquet files (rows split in half).

    Two files per source make every case also cover rows of one entity spread over several files.
    ``tmp_path`` is new for each call, so calls are isolated; a reused directory is an error
    (``mkdir`` refuses an existing ``data/<name>``) rather than a silent mix of two calls' rows.
    """
    sources: dict[str, DataSource] = {}
    for name, spec in tables.items():
        directory = tmp_path / "data" / name
        directory.mkdir(parents=True)
        half = spec.table.num_rows // 2
        pq.write_table(spec.table.slice(0, half), directory / "part-0.parquet")
        pq.write_table(spec.table.slice(half), directory / "part-1.parquet")
        sources[name] = FileSource(
            name=name,
            path=f"data/{name}/",
            timestamp_field=spec.timestamp_field,
            created_timestamp_column=spec.created_timestamp_column,
        )
    store, config = open_store(tmp_path, {"type": "duckdb", "threads": 1})
    close = getattr(store, "close", None)
    return OfflineSetup(store, sources, config, [close] if callable(close) else [])


# -- lookup ---------------------------------------------------------------------------------------


def offline_factory(backend: str) -> tuple[Factory | None, dict[str, str]]:
    """The factory and declared gaps of a backend; ``(None, {})`` if its module or factory is missing."""
    if backend == "duckdb":
        return make_duckdb, DUCKDB_GAPS
    module: Any = None
    for name in (f"{__package__}.offline_{backend}", f"tests.conformance.offline_{backend}"):
        try:
            module = importlib.import_module(name)
            break
        except ModuleNotFoundError as exc:
            if not name.startswith(exc.name or "\0"):  # a missing import *inside* the module is a real error
                raise
    if module is None:
        return None, {}
    gaps = getattr(module, "GAPS", {})
    return getattr(module, f"make_{backend}", None), dict(gaps) if isinstance(gaps, dict) else {}
