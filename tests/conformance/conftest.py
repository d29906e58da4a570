"""Online store conformance fixtures: one suite, parametrized over every backend.

``pytest -m sqlite``, ``-m redis`` or ``-m redis_cluster`` selects one backend. A backend whose factory
is not available yet is skipped with a loud reason (and fails under CI=true).
"""

from __future__ import annotations

import functools
import importlib
import inspect
import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ladle.online.base import OnlineStore

from .backends import SQLITE_GAPS, make_sqlite

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
        backend = callspec.params.get("online_backend") if callspec is not None else None
        if backend is None:
            continue
        _, gaps = _factory(backend)
        name = getattr(item, "originalname", item.name)
        if name in gaps:
            item.add_marker(pytest.mark.xfail(strict=True, reason=f"{backend}: {gaps[name]}"))


@pytest.fixture(params=ONLINE_BACKENDS)
def online_backend(request: pytest.FixtureRequest) -> str:
    """The backend name of this parametrization."""
    return str(request.param)


@pytest.fixture
def online_opener(online_backend: str, request: pytest.FixtureRequest) -> Opener:
    """A picklable zero-argument callable opening another store instance on the same data."""
    factory, _ = _factory(online_backend)
    if factory is None:
        reason = (
            f"BACKEND NOT AVAILABLE: tests/conformance/redis_backends.py has no make_{online_backend}() yet; "
            "the online conformance suite cannot run on it"
        )
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)
    kwargs = {}
    for name in inspect.signature(factory).parameters:
        try:
            kwargs[name] = request.getfixturevalue(name)
        except pytest.FixtureLookupError:
            reason = f"BACKEND NOT AVAILABLE: make_{online_backend}() needs the fixture '{name}', which does not exist"
            if IN_CI:
                pytest.fail(reason)
            pytest.skip(reason)
    return functools.partial(factory, **kwargs)


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
