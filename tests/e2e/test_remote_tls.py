"""The remote online store over TLS: ``cert`` (Feast's key) verifies a real ``ladle serve --tls-cert``."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
import yaml

from ladle import FeatureStore
from ladle.errors import BackendUnavailableError
from security.serve_process import Served, serve
from unit.odfv_repo import PROJECT, build_odfv_repo

FEATURES = ["prices:current_price", "order_value:order_value"]
ROWS = {"commodity_code": ["brent", "gold"], "quantity": [2.0, 3.0]}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Served, Path, Path]]:
    path = tmp_path_factory.mktemp("tls_remote")
    build_odfv_repo(path / "repo").close()
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    leaf.cert_chain_pems[0].write_to_path(str(path / "cert.pem"))
    leaf.private_key_pem.write_to_path(str(path / "key.pem"))
    ca.cert_pem.write_to_path(str(path / "ca.pem"))
    with serve(path / "repo", "--tls-cert", str(path / "cert.pem"), "--tls-key", str(path / "key.pem")) as running:
        yield running, path / "repo", path / "ca.pem"


def client(root: Path, port: int, cert: Path | None) -> FeatureStore:
    root.mkdir(parents=True, exist_ok=True)
    online: dict[str, object] = {"type": "remote", "path": f"https://127.0.0.1:{port}"}
    if cert is not None:
        online["cert"] = str(cert)
    config = {"project": PROJECT, "registry": "data/registry.db", "online_store": online}
    (root / "feature_store.yaml").write_text(yaml.safe_dump(config))
    return FeatureStore(repo_path=root)


@pytest.mark.slow  # starts its own ladle serve
def test_cert_verifies_the_server_and_answers_match(served: tuple[Served, Path, Path], tmp_path: Path) -> None:
    running, repo, ca = served
    embedded = FeatureStore(repo_path=repo)
    remote = client(tmp_path / "ok", running.rest_port, ca)
    try:
        want = embedded.get_online_features(FEATURES, ROWS).to_dict()
        assert remote.get_online_features(FEATURES, ROWS).to_dict() == want
        assert asyncio.run(remote.get_online_features_async(FEATURES, ROWS)).to_dict() == want
    finally:
        remote.close()
        embedded.close()
    untrusted = client(tmp_path / "no_ca", running.rest_port, None)  # system CAs do not know trustme's CA
    try:
        with pytest.raises(BackendUnavailableError, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
            untrusted.get_online_features(FEATURES, ROWS)
    finally:
        untrusted.close()
