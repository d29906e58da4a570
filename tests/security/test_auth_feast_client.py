"""Feast's own SDK (0.67.0, ``online_store: type: remote``) reads from Ladle with OIDC on, and not without a token.

Feast is installed once into a venv in the user cache (tests/feast_venv.py; ~40 s the first time, from the
machine's configured package index). Deselect with ``-m "not feast_client"``.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

import feast_venv
from ladle import FeatureStore
from ladle.server.rest import RestApp
from security.auth_idp import CLIENT_ID, IdP
from security.auth_servers import core_of, repo_with_auth, rest_server
from unit.server_repo import PRICES

pytestmark = pytest.mark.feast_client

ROOT = Path(__file__).resolve().parents[2]

READ = """
import json, sys
from feast import FeatureStore
store = FeatureStore(repo_path=sys.argv[1])
rows = [{"commodity_code": "crude_oil_wti"}, {"commodity_code": "brent"}]
print(json.dumps(store.get_online_features(features=sys.argv[2].split(","), entity_rows=rows).to_dict()))
"""


@pytest.fixture(scope="session")
def feast_python() -> Path:
    """The Python of a venv with Feast installed (made once, then reused). (tests/feast_venv.py)."""
    return feast_venv.feast_python()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, IdP]]:
    idp = IdP()
    section = {"type": "oidc", "auth_discovery_url": idp.discovery_url, "client_id": CLIENT_ID}
    store = FeatureStore(repo_path=repo_with_auth(tmp_path_factory.mktemp("feast_auth"), section))
    with rest_server(RestApp(core_of(store))) as url:
        yield url, idp
    store.close()
    idp.close()


def _feast_read(python: Path, repo: Path, url: str, auth: dict[str, str]) -> subprocess.CompletedProcess[str]:
    repo.mkdir(exist_ok=True)
    config = {
        "project": "server_test",
        "provider": "local",
        "registry": str(repo / "registry.db"),
        "online_store": {"type": "remote", "path": url},
        "auth": auth,
        "entity_key_serialization_version": 3,
    }
    (repo / "feature_store.yaml").write_text(yaml.safe_dump(config))
    features = "commodity_price_features:current_price,commodity_price_features:volume_24h"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FEAST_", "LADLE_"))}
    command = [str(python), "-c", READ, str(repo), features]
    return subprocess.run(command, check=False, capture_output=True, text=True, timeout=300, cwd=repo, env=env)


def test_feast_sdk_reads_with_a_token(feast_python: Path, server: tuple[str, IdP], tmp_path: Path) -> None:
    url, idp = server
    done = _feast_read(feast_python, tmp_path / "with_token", url, {"type": "oidc", "token": idp.token()})
    assert done.returncode == 0, done.stderr[-2000:]
    values = json.loads(done.stdout.strip().splitlines()[-1])
    assert values["commodity_code"] == ["crude_oil_wti", "brent"]
    assert values["current_price"] == [PRICES["crude_oil_wti"][0], PRICES["brent"][0]]
    assert values["volume_24h"] == [PRICES["crude_oil_wti"][2], PRICES["brent"][2]]


@pytest.mark.parametrize("kind", ["no_auth", "wrong_token"])
def test_feast_sdk_is_refused_without_a_valid_token(
    feast_python: Path, server: tuple[str, IdP], tmp_path: Path, kind: str
) -> None:
    url, idp = server
    auth = {"type": "no_auth"} if kind == "no_auth" else {"type": "oidc", "token": idp.token(aud="someone-else")}
    done = _feast_read(feast_python, tmp_path / kind, url, auth)
    assert done.returncode != 0
    detail = "Missing authentication token" if kind == "no_auth" else "Invalid or expired access token"
    assert "401" in done.stderr and detail in done.stderr, done.stderr[-2000:]
