"""TLS on both ports of ``ladle serve`` (docs/security.md, "TLS"), with real clients and trustme certificates.

httpx (REST) and grpcio (gRPC, both engines) trust the test CA; client certificates come from a
second CA; ALPN is read off a raw TLS socket.
"""

from __future__ import annotations

import json
import socket
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import pytest
import trustme
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ladle.errors import ConfigError
from ladle.server.settings import ServerSettings
from ladle.server.tls import TlsFiles
from security.serve_process import Served, make_repo, run_serve, serve
from unit.server_repo import PRICES

pytestmark = pytest.mark.slow
BODY = {"features": ["commodity_price_features:current_price"], "entities": {"commodity_code": ["brent"]}}


@dataclass
class Pki:
    """A server CA with a certificate for 127.0.0.1, and a client CA with one client certificate."""

    ca: trustme.CA
    cert: Path
    key: Path
    ca_pem: Path
    client_ca_pem: Path
    client: trustme.LeafCert
    other_key: Path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    path = tmp_path_factory.mktemp("pki")
    ca, client_ca = trustme.CA(), trustme.CA()
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    leaf.cert_chain_pems[0].write_to_path(str(path / "cert.pem"))
    for blob in leaf.cert_chain_pems[1:]:
        blob.write_to_path(str(path / "cert.pem"), append=True)
    leaf.private_key_pem.write_to_path(str(path / "key.pem"))
    ca.cert_pem.write_to_path(str(path / "ca.pem"))
    client_ca.cert_pem.write_to_path(str(path / "client_ca.pem"))
    ca.issue_cert("127.0.0.1").private_key_pem.write_to_path(str(path / "other_key.pem"))
    return Pki(ca, path / "cert.pem", path / "key.pem", path / "ca.pem", path / "client_ca.pem",
               client_ca.issue_cert("client@example.test"), path / "other_key.pem")  # fmt: skip


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_repo(tmp_path_factory.mktemp("tls_repo"))


def client_context(pki: Pki, *, with_cert: bool) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.ca_pem))
    if with_cert:
        pki.client.configure_cert(context)
    return context


def grpc_credentials(pki: Pki, *, with_cert: bool) -> grpc.ChannelCredentials:
    root = pki.ca_pem.read_bytes()
    if not with_cert:
        return grpc.ssl_channel_credentials(root_certificates=root)
    chain = b"".join(blob.bytes() for blob in pki.client.cert_chain_pems)
    return grpc.ssl_channel_credentials(root, pki.client.private_key_pem.bytes(), chain)


def grpc_health(served: Served, credentials: grpc.ChannelCredentials) -> int:
    """The health status, once the server's first readiness check has set it (NOT_SERVING until then)."""
    options = [("grpc.use_local_subchannel_pool", 1)]
    deadline = time.monotonic() + 15
    with grpc.secure_channel(served.grpc_target, credentials, options=options) as channel:
        while True:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
            if reply.status == health_pb2.HealthCheckResponse.SERVING or time.monotonic() > deadline:
                return int(reply.status)
            time.sleep(0.2)


def alpn(port: int, context: ssl.SSLContext, offer: list[str]) -> str | None:
    context.set_alpn_protocols(offer)
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        return tls.selected_alpn_protocol()


def rest_online(served: Served, context: ssl.SSLContext) -> float:
    with httpx.Client(verify=context) as client:
        assert client.get(f"https://127.0.0.1:{served.rest_port}/health").status_code == 200
        response = client.post(f"https://127.0.0.1:{served.rest_port}/get-online-features", content=json.dumps(BODY))
        assert response.status_code == 200
        return float(response.json()["results"][1]["values"][0])


@pytest.fixture(scope="module")
def plain_tls(repo: Path, pki: Pki) -> Iterator[Served]:
    with serve(repo, "--tls-cert", str(pki.cert), "--tls-key", str(pki.key)) as served:
        yield served


def test_rest_over_tls_with_httpx(plain_tls: Served, pki: Pki) -> None:
    assert "REST https://" in "".join(plain_tls.output)
    assert rest_online(plain_tls, client_context(pki, with_cert=False)) == PRICES["brent"][0]
    with pytest.raises(httpx.ConnectError):  # the server's CA is not trusted by default
        httpx.get(f"https://127.0.0.1:{plain_tls.rest_port}/health")
    with pytest.raises(httpx.RemoteProtocolError):  # plain HTTP on the TLS port gets nothing back
        httpx.get(f"http://127.0.0.1:{plain_tls.rest_port}/health")


def test_builtin_grpc_engine_over_tls_negotiates_h2(plain_tls: Served, pki: Pki) -> None:
    credentials = grpc_credentials(pki, with_cert=False)
    assert grpc_health(plain_tls, credentials) == health_pb2.HealthCheckResponse.SERVING
    assert alpn(plain_tls.grpc_port, client_context(pki, with_cert=False), ["h2", "http/1.1"]) == "h2"
    assert alpn(plain_tls.rest_port, client_context(pki, with_cert=False), ["h2", "http/1.1"]) == "http/1.1"


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
def test_tls_1_1_is_refused(plain_tls: Served, pki: Pki) -> None:
    context = client_context(pki, with_cert=False)
    context.minimum_version = context.maximum_version = ssl.TLSVersion.TLSv1_1
    for port in (plain_tls.rest_port, plain_tls.grpc_port):
        with pytest.raises(ssl.SSLError):
            alpn(port, context, ["http/1.1"])
    assert TlsFiles.load(settings(pki)).context([]).minimum_version == ssl.TLSVersion.TLSv1_2  # type: ignore[union-attr]


def settings(pki: Pki, **extra: str) -> ServerSettings:
    return ServerSettings(tls_cert=str(pki.cert), tls_key=str(pki.key), **extra)  # type: ignore[arg-type]


@pytest.mark.parametrize("engine", ["ladle", "grpcio"])
def test_client_certificates_required_on_both_ports(repo: Path, pki: Pki, engine: str) -> None:
    flags = ["--tls-cert", str(pki.cert), "--tls-key", str(pki.key), "--tls-client-ca", str(pki.client_ca_pem),
             "--grpc-engine", engine]  # fmt: skip
    with serve(repo, *flags) as served:
        assert grpc_health(served, grpc_credentials(pki, with_cert=True)) == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError) as refused:
            grpc_health(served, grpc_credentials(pki, with_cert=False))
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        if engine == "ladle":  # REST is the same whatever the gRPC engine
            assert rest_online(served, client_context(pki, with_cert=True)) == PRICES["brent"][0]
            with pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)):
                rest_online(served, client_context(pki, with_cert=False))


def test_tls_from_feature_store_yaml(tmp_path: Path, pki: Pki) -> None:
    repo = make_repo(tmp_path / "repo")
    (repo / "tls").mkdir()
    for name in ("cert.pem", "key.pem"):
        (repo / "tls" / name).write_bytes((pki.cert.parent / name).read_bytes())
    yaml_path = repo / "feature_store.yaml"
    block = "feature_server:\n  tls:\n    cert: tls/cert.pem\n    key: tls/key.pem\n"
    text = yaml_path.read_text()
    assert "feature_server:\n" in text
    yaml_path.write_text(text.replace("feature_server:\n", block))
    with serve(repo, "--no-grpc") as served:
        assert rest_online(served, client_context(pki, with_cert=False)) == PRICES["brent"][0]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--tls-cert", "/nonexistent/cert.pem", "--tls-key", "KEY"], "does not exist"),
        (["--tls-cert", "CERT", "--tls-key", "OTHER_KEY"], "the key does not match the certificate"),
        (["--tls-cert", "CERT", "--tls-key", "CA"], "cannot use certificate"),
        (["--tls-cert", "CERT"], "needs --tls-key"),
        (["--tls-cert", "CERT", "--tls-key", "KEY", "--tls-client-ca", "/nonexistent/ca.pem"], "does not exist"),
    ],
)
def test_bad_tls_files_stop_the_start_with_one_line(repo: Path, pki: Pki, flags: list[str], message: str) -> None:
    names = {"CERT": pki.cert, "KEY": pki.key, "OTHER_KEY": pki.other_key, "CA": pki.ca_pem}
    result = run_serve(repo, *[str(names.get(f, f)) for f in flags])
    assert result.returncode == 1
    assert message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_an_unreadable_key_names_the_file(tmp_path: Path, pki: Pki) -> None:
    key = tmp_path / "key.pem"
    key.write_bytes(pki.key.read_bytes())
    key.chmod(0)
    try:
        key.read_bytes()
        pytest.skip("running as a user that reads any file (root): cannot make the key unreadable")
    except PermissionError:
        pass
    with pytest.raises(ConfigError, match="cannot be read"):
        TlsFiles.load(ServerSettings(tls_cert=str(pki.cert), tls_key=str(key)))


def test_optional_client_certificates(pki: Pki) -> None:
    files = TlsFiles.load(settings(pki, tls_client_ca=str(pki.client_ca_pem), tls_client_auth="optional"))
    assert files is not None and not files.require_client_cert
    assert files.context(["h2"]).verify_mode == ssl.CERT_OPTIONAL
    with pytest.raises(ConfigError, match="tls_client_auth"):
        ServerSettings(tls_client_auth="sometimes")
    grpcio = settings(pki, tls_client_ca=str(pki.client_ca_pem), tls_client_auth="optional", grpc_engine="grpcio")
    with pytest.raises(ConfigError, match="grpcio cannot make client certificates optional"):
        TlsFiles.load(grpcio)
