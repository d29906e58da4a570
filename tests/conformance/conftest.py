"""Conformance fixtures: the online and the offline suite, each parametrized over its backends.

Online: ``pytest -m sqlite``, ``-m redis`` or ``-m redis_cluster`` selects one backend (factories in
``backends.py`` and ``redis_backends.py``). Offline: ``pytest -m duckdb`` (factories and the list of
backends in ``offline_backends.py``). A backend whose factory is not available yet is skipped with a
loud reason (and fails under CI=true); the cases a backend declares as gaps run as strict xfails.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import os
import uuid
from collections.abc import Callable, Iterator, Mapping
from datetime import timedelta
from typing import Any, NoReturn

import pytest

from ladle.online.base import OnlineStore

from .backends import SQLITE_GAPS, make_sqlite
from .offline_backends import OFFLINE_BACKENDS, OfflineBuilder, OfflineSetup, SourceTable, offline_factory, release
from .offline_support import Guarded, make_view, window_rows

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}

ONLINE_BACKENDS = [
    pytest.param("sqlite", marks=pytest.mark.sqlite),
    pytest.param("redis", marks=pytest.mark.redis),
    pytest.param("redis_cluster", marks=pytest.mark.redis_cluster),
]
Opener = Callable[[], OnlineStore]


def _redis_module() -> Any:
    for name in (f"{__package__}.redis_backends", "tests.conformance.redis_backends"):
        try:
            return importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if not name.startswith(exc.name or "\0"):  # a missing import *inside* the module is a real error
                raise
    return None


def _factory(backend: str) -> tuple[Callable[..., OnlineStore] | None, dict[str, str]]:
    if backend == "sqlite":
        return make_sqlite, SQLITE_GAPS
    module = _redis_module()
    if module is None:
        return None, {}
    factory = getattr(module, f"make_{backend}", None)
    gaps = getattr(module, "GAPS", {})
    return factory, dict(gaps.get(backend, {})) if isinstance(gaps, dict) else {}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Turn each backend's declared gaps into strict xfails."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is None:
            continue
        if "online_backend" in callspec.params:
            backend = callspec.params["online_backend"]
            _, gaps = _factory(backend)
        elif "offline_backend" in callspec.params:
            backend = callspec.params["offline_backend"]
            _, gaps = offline_factory(backend)
        else:
            continue
        name = getattr(item, "originalname", item.name)
        if name in gaps:
            item.add_marker(pytest.mark.xfail(strict=True, reason=f"{backend}: {gaps[name]}"))


def _unavailable(reason: str) -> NoReturn:
    if IN_CI:
        pytest.fail(reason)
    pytest.skip(reason)


def _bind_fixtures(
    factory: Callable[..., Any],
    request: pytest.FixtureRequest,
    skip: int,
    label: str,
    skip_names: frozenset[str] | set[str] = frozenset(),
) -> dict[str, Any]:
    """The factory's parameters after the first ``skip`` (except ``skip_names``), resolved as fixtures by name."""
    kwargs = {}
    for name in list(inspect.signature(factory).parameters)[skip:]:
        if name in skip_names:
            continue
        try:
            kwargs[name] = request.getfixturevalue(name)
        except pytest.FixtureLookupError:
            _unavailable(f"BACKEND NOT AVAILABLE: {label} needs the fixture '{name}', which does not exist")
    return kwargs


@pytest.fixture(params=ONLINE_BACKENDS)
def online_backend(request: pytest.FixtureRequest) -> str:
    """The backend name of this parametrization."""
    return str(request.param)


@pytest.fixture
def online_opener(online_backend: str, request: pytest.FixtureRequest) -> Opener:
    """A picklable zero-argument callable opening another store instance on the same data."""
    factory, _ = _factory(online_backend)
    if factory is None:
        _unavailable(
            f"BACKEND NOT AVAILABLE: tests/conformance/redis_backends.py has no make_{online_backend}() yet; "
            "the online conformance suite cannot run on it"
        )
    return functools.partial(factory, **_bind_fixtures(factory, request, 0, f"make_{online_backend}()"))


@pytest.fixture
def project() -> str:
    """A project name of its own for each test (isolation on shared servers)."""
    return f"conf_{uuid.uuid4().hex[:10]}"


@pytest.fixture
def online_store(online_opener: Opener, project: str) -> Iterator[OnlineStore]:
    """A store instance; the test's project is torn down afterwards."""
    store = online_opener()
    yield store
    try:
        store.teardown(project, [])
    finally:
        store.close()


# -- offline ---------------------------------------------------------------------------------------


@pytest.fixture(params=OFFLINE_BACKENDS)
def offline_backend(request: pytest.FixtureRequest) -> str:
    """The offline backend name of this parametrization."""
    return str(request.param)


@pytest.fixture
def offline(
    offline_backend: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OfflineBuilder]:
    """``offline(tables)``: a store of this backend holding ``tables`` (name → SourceTable).

    It may be called several times in one test (hypothesis examples): each call gets a new
    directory for a factory parameter named ``tmp_path``, and the factory keeps each call's tables
    apart (offline_backends.py). Whatever a call set up is released after the test, unless the
    test released it earlier (``offline_backends.release``).
    """
    factory, _ = offline_factory(offline_backend)
    if factory is None:
        _unavailable(
            f"BACKEND NOT AVAILABLE: tests/conformance/offline_{offline_backend}.py has no "
            f"make_{offline_backend}() yet; the offline conformance suite cannot run on it"
        )
    fresh_dir = "tmp_path" in inspect.signature(factory).parameters
    label = f"make_{offline_backend}()"
    shared = _bind_fixtures(factory, request, 1, label, skip_names={"tmp_path"})
    made: list[OfflineSetup] = []

    def build(tables: Mapping[str, SourceTable]) -> OfflineSetup:
        kwargs = dict(shared)
        if fresh_dir:
            kwargs["tmp_path"] = tmp_path_factory.mktemp(f"offline_{offline_backend}")
        setup = factory(tables, **kwargs)
        # Forget setups released already (a property test makes one per example): holding them would
        # keep their stores, connection pools and catalogs alive until the test ends.
        made[:] = [s for s in made if s.cleanup]
        made.append(setup)
        return setup

    yield build
    errors: list[Exception] = []
    for setup in reversed(made):
        try:
            release(setup)
        except Exception as exc:  # release every setup, then report the first failure
            errors.append(exc)
    if errors:
        raise errors[0]


@pytest.fixture
def guarded(offline: OfflineBuilder) -> Guarded:
    """A store with one view (``prices``, ttl one hour), and a check that a failed call changed nothing."""
    setup = offline({"prices": window_rows()})
    return Guarded.of(setup, make_view(setup.sources["prices"], "prices", ttl=timedelta(hours=1)))
