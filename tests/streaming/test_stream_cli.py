"""``ladle stream`` refuses to start with one readable line and a non-zero exit: no stream views,
a bad ``stream:`` block, an unreachable broker, an unknown view."""

from __future__ import annotations

from pathlib import Path

import yaml
from click.testing import CliRunner

from ladle.cli.main import cli
from ladle.streaming.broker import free_port
from streaming.stream_repo import make_repo


def run(repo: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["-c", str(repo), "stream", "--metrics-port", "0", *args])
    return result.exit_code, result.output


def one_line_error(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), output
    assert "Traceback" not in output
    return lines[0]


def test_a_repo_without_stream_views(tmp_path: Path) -> None:
    (tmp_path / "feature_store.yaml").write_text("project: nostream\n")
    code, out = run(tmp_path)
    assert code == 1
    assert "no stream feature views over Kafka sources" in one_line_error(out)


def test_a_bad_stream_block(tmp_path: Path) -> None:
    (tmp_path / "feature_store.yaml").write_text("project: bad\nstream:\n  max_batch_event: 10\n")
    code, out = run(tmp_path)
    assert code == 1
    assert "stream.max_batch_event: unknown key" in one_line_error(out)
    (tmp_path / "feature_store.yaml").write_text("project: bad\nstream:\n  poll_timeout_ms: soon\n")
    code, out = run(tmp_path)
    assert code == 1 and "stream.poll_timeout_ms" in one_line_error(out)


def test_an_unreachable_broker(tmp_path: Path) -> None:
    nobody = f"127.0.0.1:{free_port()}"
    repo = make_repo(tmp_path / "repo", nobody, "ticks")
    code, out = run(repo)
    assert code == 1
    line = one_line_error(out)
    assert "BackendUnavailableError" in line and nobody in line


def test_an_unknown_view_names_the_known_ones(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", f"127.0.0.1:{free_port()}", "ticks")
    code, out = run(repo, "--views", "ticks_raw,nope")
    assert code == 1
    line = one_line_error(out)
    assert "'nope'" in line and "ticks_agg, ticks_hop, ticks_raw" in line


def test_env_expansion_reaches_the_kafka_settings(tmp_path: Path) -> None:
    from ladle.config import load_yaml

    (tmp_path / "feature_store.yaml").write_text(
        yaml.safe_dump({"project": "p", "stream": {"kafka": {"sasl.password": "${KAFKA_TEST_SECRET:-fallback}"}}})
    )
    assert load_yaml(tmp_path / "feature_store.yaml").stream.kafka["sasl.password"] == "fallback"
