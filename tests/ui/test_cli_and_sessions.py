"""``ladle ui`` as a process, and the stream-session journal the Jobs page reads."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from ladle.cli.main import cli
from ladle.registry.engine import Database
from ladle.registry.stream_sessions import StreamSessions, counter_total, recorded_session
from ladle.store import FeatureStore
from ui.conftest import Recorded


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_ladle_ui_serves_until_sigterm(commodity: Recorded) -> None:
    port = free_port()
    command = [sys.executable, "-m", "ladle", "-c", str(commodity.repo), "ui", "--port", str(port)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                session = httpx.get(f"http://127.0.0.1:{port}/ui/api/session", timeout=1)
                break
            except httpx.TransportError:
                assert process.poll() is None, process.communicate()[1]
                assert time.monotonic() < deadline, "ladle ui did not start within 30 s"
                time.sleep(0.1)
        assert session.json() == {"project": "commodity_analytics", "principal": "anonymous", "auth": "no_auth"}
        page = httpx.get(f"http://127.0.0.1:{port}/ui/")
        assert page.status_code == 200 and 'data-prefix="/ui"' in page.text
        assert httpx.get(f"http://127.0.0.1:{port}/get-online-features").status_code == 404  # the UI only
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=15)
    # uvicorn shuts down gracefully, then re-raises the signal it captured: "killed by SIGTERM" is the clean end.
    assert process.returncode in (0, -signal.SIGTERM), err
    assert "Traceback" not in err
    assert f"http://127.0.0.1:{port}/ui/" in err


def test_ladle_ui_on_a_missing_repo_is_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["-c", str(tmp_path / "nowhere"), "ui"])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error:"), result.output


@pytest.fixture
def store(tmp_path: Path) -> FeatureStore:
    (tmp_path / "feature_store.yaml").write_text(
        "project: sessions\nregistry: {registry_type: sql, path: data/registry.db}\n"
        "online_store: {type: sqlite, path: data/online.db}\noffline_store: {type: duckdb}\n"
    )
    return FeatureStore(repo_path=tmp_path)


def sessions_of(store: FeatureStore) -> StreamSessions:
    return StreamSessions(Database(store.config.registry, store.repo_path), store.project)


def test_a_stream_run_is_recorded_as_a_session(store: FeatureStore) -> None:
    from prometheus_client import CollectorRegistry, Counter

    emitted = Counter("rows_emitted", "rows", ["feature_view"], registry=CollectorRegistry())
    with recorded_session(store, ["a_view", "b_view"], lambda: counter_total(emitted)):
        assert [s.status for s in sessions_of(store).sessions()] == ["running"]
        emitted.labels(feature_view="a_view").inc(5)
        emitted.labels(feature_view="b_view").inc(7)
    (session,) = sessions_of(store).sessions()
    assert (session.status, session.rows_emitted, session.feature_views) == ("stopped", 12, ("a_view", "b_view"))
    assert session.finished_at is not None and session.finished_at >= session.started_at
    assert session.owner.endswith(f":{os.getpid()}")


def test_a_failed_stream_run_keeps_its_error(store: FeatureStore) -> None:
    with pytest.raises(RuntimeError, match="broker went away"), recorded_session(store, ["v"], lambda: 3):
        raise RuntimeError("broker went away")
    (session,) = sessions_of(store).sessions()
    assert (session.status, session.rows_emitted, session.detail) == ("failed", 3, "RuntimeError: broker went away")


def test_teardown_deletes_the_project_sessions(store: FeatureStore) -> None:
    with recorded_session(store, ["v"], lambda: 1):
        pass
    assert len(sessions_of(store).sessions()) == 1
    store.teardown()
    assert sessions_of(store).sessions() == []


@pytest.mark.parametrize("ci", [True, False])
def test_a_missing_browser_fails_under_ci_and_skips_loudly_outside(monkeypatch: pytest.MonkeyPatch, ci: bool) -> None:
    from ui import test_browser

    monkeypatch.setattr(test_browser, "CHROMIUM", "/nonexistent/chromium")
    monkeypatch.setattr(test_browser, "in_ci", lambda: ci)
    outcome = pytest.fail.Exception if ci else pytest.skip.Exception
    with pytest.raises(outcome, match="BROWSER MISSING: no Chromium at /nonexistent/chromium"):
        test_browser.require_browser()
