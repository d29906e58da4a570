"""Feast's CLI habits work: ``serve -h HOST -p PORT -t grpc --registry_ttl_sec N``, and ``--help`` everywhere."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from click.testing import CliRunner

from ladle.cli.main import cli
from ladle.cli.serve import serve, settings_from
from ladle.server.settings import ServerSettings

from .test_docs import gen_cli_docs


def parsed(*args: str) -> ServerSettings:
    params: dict[str, Any] = dict(serve.make_context("serve", list(args)).params)
    return settings_from(params.pop("server_type"), params)


def test_feast_serve_flags() -> None:
    settings = parsed("-h", "0.0.0.0", "-p", "6567", "-t", "grpc", "--registry_ttl_sec", "5", "-m")
    assert (settings.host, settings.port, settings.registry_ttl_sec, settings.metrics) == ("0.0.0.0", 6567, 5.0, True)
    assert (settings.rest, settings.grpc) == (False, True)
    http = parsed("--host", "127.0.0.2", "--type", "http", "--registry-ttl-sec", "7", "--no-metrics")
    assert (http.host, http.rest, http.grpc) == ("127.0.0.2", True, False)
    assert (http.registry_ttl_sec, http.metrics) == (7.0, False)
    both = parsed()
    assert (both.rest, both.grpc) == (True, True)


def test_help_still_works_and_h_is_the_host_only_on_serve() -> None:
    runner = CliRunner()
    for args in (["--help"], ["-h"], ["serve", "--help"]):
        result = runner.invoke(cli, args, prog_name="ladle")
        assert result.exit_code == 0 and "Usage: ladle" in result.output, args
    assert "-h, --host TEXT" in runner.invoke(cli, ["serve", "--help"]).output
    assert "-h, --help" in runner.invoke(cli, ["materialize", "--help"]).output
    bad = runner.invoke(cli, ["serve", "-t", "websocket"])
    assert bad.exit_code == 2 and "'websocket' is not one of 'http', 'grpc'" in bad.output


def test_every_feast_verb_is_in_the_cli_reference() -> None:
    generator = gen_cli_docs()
    doc = (Path(__file__).parents[2] / "docs" / "cli.md").read_text()
    assert len(generator.FEAST_VERBS) == 36  # `permissions` counts as its four verbs
    for verb in generator.FEAST_VERBS:
        assert f"| `feast {verb}` | " in doc, verb
