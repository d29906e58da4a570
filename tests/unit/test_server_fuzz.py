"""Schemathesis against the REST app's own OpenAPI document, in-process and bounded.

Generated requests (valid and invalid) must never get a 5xx, and every answer must match the
documented status codes, content types and response schemas.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from ladle import FeatureStore
from ladle.server.rest import RestApp, create_app
from unit.server_repo import build_repo

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def fuzz_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RestApp]:
    path: Path = tmp_path_factory.mktemp("fuzz_repo")
    build_repo(path).store.close()
    store = FeatureStore(repo_path=path)
    yield create_app(store)
    store.close()


@pytest.fixture(scope="module")
def api_schema(fuzz_app: RestApp) -> Any:
    return schemathesis.openapi.from_asgi("/openapi.json", fuzz_app)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_and_never_fails(case: Any) -> None:
    case.call_and_validate(checks=CHECKS)
