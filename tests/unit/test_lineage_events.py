"""OpenLineage events of apply, materialize, push, retrieval, ingest and streams, checked against the spec.

A real HTTP receiver (a tiny server on a loopback port) and the file transport collect what Ladle
sends; every event is validated with ``jsonschema`` against the vendored OpenLineage 2-0-2 spec
(``openlineage_spec/``) and its ``ladle`` run facet against the facet schema shipped in the package.
"""

from __future__ import annotations

import json
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jsonschema
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

import ladle.monitor
from ladle import FeatureStore
from ladle.cli.main import cli
from ladle.errors import ConfigError
from ladle.metrics import LINEAGE_EMIT_FAILURES
from ladle.monitor.lineage_jobs import stream_run

from .online_repo import OBJECTS, T0, build, prices

SPEC = json.loads((Path(__file__).parent / "openlineage_spec" / "OpenLineage-2-0-2.json").read_text())
FACET = json.loads((Path(ladle.monitor.__file__).parent / "lineage_facet.json").read_text())
EVENT_VALIDATOR = jsonschema.Draft202012Validator(SPEC, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
FACET_VALIDATOR = jsonschema.Draft202012Validator(FACET, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


def check(event: dict[str, Any]) -> None:
    """The event is a valid OpenLineage RunEvent; the standard facets have their required fields."""
    EVENT_VALIDATOR.validate(event)
    assert event["schemaURL"].startswith("https://openlineage.io/spec/2-0-2/OpenLineage.json")
    FACET_VALIDATOR.validate(event["run"]["facets"]["ladle"])
    for dataset in event.get("inputs", []) + event.get("outputs", []):
        schema = dataset["facets"]["schema"]
        assert schema["fields"], dataset
        assert all(isinstance(f["name"], str) and isinstance(f["type"], str) for f in schema["fields"])
    if event["eventType"] == "FAIL":
        assert event["run"]["facets"]["errorMessage"]["programmingLanguage"] == "python"
    job_type = event["job"]["facets"]["jobType"]
    assert job_type["integration"] == "LADLE" and job_type["processingType"] in ("BATCH", "STREAMING")


class Receiver:
    """An HTTP endpoint on 127.0.0.1 that keeps the JSON bodies and headers it was sent."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        received = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.headers.append({**self.headers, "path": self.path})
                received.events.append(json.loads(body))
                self.send_response(201)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def lineage_store(root: Path, lineage: dict[str, Any]) -> FeatureStore:
    """The online test repo (SQLite online, Parquet offline) with a ``lineage:`` block."""
    build(root).close()
    config = yaml.safe_load((root / "feature_store.yaml").read_text())
    config["lineage"] = lineage
    (root / "feature_store.yaml").write_text(yaml.safe_dump(config))
    return FeatureStore(repo_path=root)


def by_job(events: list[dict[str, Any]], job: str) -> list[dict[str, Any]]:
    return [e for e in events if e["job"]["name"] == f"ladle.{job}"]


def wait_for(found: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not found():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def file_events(path: Path) -> list[dict[str, Any]]:
    """The events of the complete lines of a JSON-lines file (the emitter may be writing the last one)."""
    if not path.exists():
        return []
    complete = path.read_text().rpartition("\n")[0]
    return [json.loads(line) for line in complete.splitlines() if line.strip()]


def test_http_events_of_apply_materialize_push_and_retrieval(tmp_path: Path, receiver: Receiver) -> None:
    store = lineage_store(
        tmp_path, {"transport": "http", "url": receiver.url, "api_key": "s3cret", "namespace": "ml-platform"}
    )
    store.apply(OBJECTS)
    results = store.materialize(T0, T0 + timedelta(days=3), ["prices"])
    store.push(
        "ticks_push",
        {"commodity_code": ["A"], "price": [1.5], "volume": [3], "note": ["n"], "event_timestamp": [T0]},
        to="online_and_offline",
    )
    entities = pd.DataFrame({"commodity_code": ["A", "B"], "event_timestamp": [T0 + timedelta(hours=5)] * 2})
    frame = store.get_historical_features(entities, features=["prices:price", "prices:volume"]).to_df()
    store.get_historical_features(entities, features=["prices:price"]).to_parquet(tmp_path / "train.parquet")
    assert store.lineage.flush()
    store.close()

    events = receiver.events
    for event in events:
        check(event)
    assert {h["Authorization"] for h in receiver.headers} == {"Bearer s3cret"}
    assert {h["path"] for h in receiver.headers} == {"/api/v1/lineage"}
    assert {e["job"]["namespace"] for e in events} == {"ml-platform"}
    # every run: one START then one COMPLETE, same run id
    runs: dict[str, list[str]] = {}
    for e in events:
        runs.setdefault(e["run"]["runId"], []).append(e["eventType"])
    assert all(states == ["START", "COMPLETE"] for states in runs.values()), runs
    assert len(runs) == 5

    online_ns = f"sqlite://{tmp_path / 'data' / 'online.db'}"
    ticks_file = str(tmp_path / "data" / "ticks.parquet")

    started, done = by_job(events, "materialize")
    assert started["run"]["facets"]["ladle"]["facts"] == {"engine": "local"}  # known up front: in START too
    assert [(d["namespace"], d["name"]) for d in done["inputs"]] == [("file", ticks_file)]
    assert [(d["namespace"], d["name"]) for d in done["outputs"]] == [(online_ns, "online_test.prices")]
    fields = {f["name"]: f["type"] for f in done["outputs"][0]["facets"]["schema"]["fields"]}
    assert fields == {"commodity_code": "String", "price": "Float64", "volume": "Int64", "note": "String",
                      "event_timestamp": "UnixTimestamp"}  # fmt: skip
    written = results[0].rows_written
    assert written > 0
    assert done["outputs"][0]["outputFacets"]["outputStatistics"]["rowCount"] == written
    facts = done["run"]["facets"]["ladle"]["facts"]
    assert facts["rowsWritten"] == written
    assert facts["views"]["prices"]["watermark"] == (T0 + timedelta(days=3)).isoformat()
    assert facts["views"]["prices"]["version"] == 1

    applied = by_job(events, "apply")[-1]
    assert ("file", ticks_file) in {(d["namespace"], d["name"]) for d in applied["inputs"]}
    assert applied["run"]["facets"]["ladle"]["facts"]["viewVersions"]["prices"] == 1

    pushed = by_job(events, "push")[-1]
    assert {(d["namespace"], d["name"]) for d in pushed["outputs"]} == {
        (online_ns, "online_test.live_prices"),
        ("file", ticks_file),
    }
    assert pushed["run"]["facets"]["ladle"]["facts"]["rowsWritten"] == 1

    retrievals = by_job(events, "get_historical_features")
    completed = [e for e in retrievals if e["eventType"] == "COMPLETE"]
    assert [e["run"]["facets"]["ladle"]["facts"].get("rowsWritten") for e in completed] == [len(frame), 2]
    to_file = retrievals[-1]
    assert [(d["namespace"], d["name"]) for d in to_file["outputs"]] == [("file", str(tmp_path / "train.parquet"))]
    assert to_file["run"]["facets"]["ladle"]["facts"]["features"] == ["prices:price"]


def test_file_transport_and_fail_event(tmp_path: Path) -> None:
    store = lineage_store(tmp_path, {"transport": "file", "file": "lineage.jsonl"})
    (tmp_path / "data" / "ticks.parquet").unlink()  # the materialization's read fails
    with pytest.raises(Exception) as raised:
        store.materialize(T0, T0 + timedelta(days=1), ["prices"])
    assert store.lineage.flush()
    store.close()
    events = file_events(tmp_path / "lineage.jsonl")
    for event in events:
        check(event)
    assert [e["eventType"] for e in events] == ["START", "FAIL"]
    message = events[1]["run"]["facets"]["errorMessage"]["message"]
    assert message.startswith(type(raised.value).__name__)


def test_unreachable_receiver_never_fails_the_job(tmp_path: Path) -> None:
    dead = Receiver()
    url = dead.url
    dead.close()  # nothing listens there now
    store = lineage_store(tmp_path, {"transport": "http", "url": url, "timeout_seconds": 0.5})
    before = LINEAGE_EMIT_FAILURES.labels(transport="http")._value.get()
    results = store.materialize(T0, T0 + timedelta(days=1), ["prices"])
    assert results[0].rows_written > 0
    assert store.lineage.flush(timeout=30)
    store.close()
    assert LINEAGE_EMIT_FAILURES.labels(transport="http")._value.get() == before + 2


def test_off_by_default_and_config_errors(tmp_path: Path) -> None:
    store = build(tmp_path)
    try:
        assert not store.lineage.enabled
        job = store.get_historical_features(
            pd.DataFrame({"commodity_code": ["A"], "event_timestamp": [T0]}), features=["prices:price"]
        )
        assert type(job).__name__ != "TracedRetrieval"
    finally:
        store.close()
    with pytest.raises(ConfigError, match="needs url"):
        FeatureStore(config={"project": "p", "lineage": {"transport": "http"}}, repo_path=tmp_path)
    with pytest.raises(ConfigError, match="needs file"):
        FeatureStore(config={"project": "p", "lineage": {"transport": "file"}}, repo_path=tmp_path)
    with pytest.raises(ConfigError, match=r"lineage\.transport"):
        FeatureStore(config={"project": "p", "lineage": {"transport": "kafka"}}, repo_path=tmp_path)


def test_stream_run_sends_running_then_complete_and_fail_on_crash(tmp_path: Path) -> None:
    store = lineage_store(tmp_path, {"transport": "file", "file": "lineage.jsonl", "running_interval_seconds": 0.05})
    path = tmp_path / "lineage.jsonl"
    with stream_run(store, [prices], "ladle-online_test"):
        wait_for(lambda: sum(e["eventType"] == "RUNNING" for e in file_events(path)) >= 2, "two RUNNING events")
    with pytest.raises(RuntimeError, match="broker gone"), stream_run(store, [prices], "g"):
        raise RuntimeError("broker gone")
    assert store.lineage.flush()
    store.close()
    events = file_events(path)
    for event in events:
        check(event)
    first, second = events[0]["run"]["runId"], events[-1]["run"]["runId"]
    states = [e["eventType"] for e in events if e["run"]["runId"] == first]
    assert states[0] == "START" and states[-1] == "COMPLETE" and set(states[1:-1]) == {"RUNNING"}
    assert [e["eventType"] for e in events if e["run"]["runId"] == second] == ["START", "FAIL"]
    assert events[0]["job"]["facets"]["jobType"]["processingType"] == "STREAMING"


INGEST_REPO = """
from datetime import UTC, datetime, timedelta

import pyarrow as pa

from ladle import Entity, FeatureView, Field, FileSource, Float64, ValueType
from ladle.ingest import Ingestion

commodity = Entity(name="commodity", join_keys=["commodity_code"], value_type=ValueType.STRING)
source = FileSource(name="prices_source", path="data/prices/", timestamp_field="event_timestamp")
prices = FeatureView(name="prices", entities=[commodity], source=source,
                     schema=[Field(name="current_price", dtype=Float64)])
T0 = datetime(2024, 1, 30, tzinfo=UTC)


def rows(window):
    ts = pa.array([T0 + timedelta(days=d) for d in range(4)], pa.timestamp("us", tz="UTC"))
    return pa.table({"commodity_code": ["wti"] * 4, "event_timestamp": ts, "current_price": [70.0, 71.0, 72.0, 73.0]})


def bad_rows(window):
    return rows(window).drop_columns(["current_price"])


good = Ingestion(name="good", feature_view="prices", compute=rows)
broken = Ingestion(name="broken", feature_view="prices", compute=bad_rows)
"""


def test_ladle_ingest_emits_complete_and_fail(tmp_path: Path) -> None:
    (tmp_path / "feature_store.yaml").write_text(
        "project: ingest_test\nregistry: data/registry.db\nlineage:\n  transport: file\n  file: lineage.jsonl\n"
    )
    (tmp_path / "repo.py").write_text(textwrap.dedent(INGEST_REPO))
    ok = CliRunner().invoke(cli, ["-c", str(tmp_path), "ingest", "good"])
    assert ok.exit_code == 0, ok.output
    bad = CliRunner().invoke(cli, ["-c", str(tmp_path), "ingest", "broken"])
    assert bad.exit_code != 0
    path = tmp_path / "lineage.jsonl"
    wait_for(lambda: len(file_events(path)) >= 4, "four ingest events")
    events = file_events(path)
    for event in events:
        check(event)
    assert [e["eventType"] for e in events] == ["START", "COMPLETE", "START", "FAIL"]
    done = events[1]
    assert [(d["namespace"], d["name"]) for d in done["outputs"]] == [("file", str(tmp_path / "data" / "prices"))]
    assert done["outputs"][0]["outputFacets"]["outputStatistics"]["rowCount"] == 4
    assert done["run"]["facets"]["ladle"]["facts"]["ingestion"] == "good"


def test_the_validator_rejects_a_broken_event(tmp_path: Path) -> None:
    store = lineage_store(tmp_path, {"transport": "file", "file": "lineage.jsonl"})
    store.materialize(T0, T0 + timedelta(days=1), ["prices"])
    assert store.lineage.flush()
    store.close()
    good = file_events(tmp_path / "lineage.jsonl")[-1]
    check(good)
    for breakage in ("eventType", "runId", "namespace"):
        bad = json.loads(json.dumps(good))
        if breakage == "eventType":
            bad["eventType"] = "FINISHED"
        elif breakage == "runId":
            del bad["run"]["runId"]
        else:
            del bad["outputs"][0]["namespace"]
        with pytest.raises(jsonschema.ValidationError):
            EVENT_VALIDATOR.validate(bad)


def test_a_scheduled_materialization_is_a_lineage_run(tmp_path: Path) -> None:
    from ladle.schedule.runner import Scheduler
    from ladle.schedule.spec import Schedule

    store = lineage_store(tmp_path, {"transport": "file", "file": "lineage.jsonl"})
    hourly = Schedule(name="hourly_prices", cron="5 * * * *", feature_views=["prices"], lookback=timedelta(days=3650))
    result = Scheduler(store, [hourly]).run_once("hourly_prices")
    assert store.lineage.flush()
    store.close()
    assert result.status == "succeeded", result
    events = file_events(tmp_path / "lineage.jsonl")
    for event in events:
        check(event)
    assert [(e["job"]["name"], e["eventType"]) for e in events] == [
        ("ladle.materialize", "START"),
        ("ladle.materialize", "COMPLETE"),
    ]
    assert events[1]["run"]["facets"]["ladle"]["facts"]["views"]["prices"]["rowsWritten"] > 0


def test_console_transport_logs_each_event(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = lineage_store(tmp_path, {"transport": "console"})
    with caplog.at_level("INFO", logger="openlineage.client.transport.console"):
        store.materialize(T0, T0 + timedelta(days=1), ["prices"])
        assert store.lineage.flush()
    store.close()
    logged = [json.loads(r.getMessage()) for r in caplog.records if r.name == "openlineage.client.transport.console"]
    for event in logged:
        check(event)
    assert [e["eventType"] for e in logged] == ["START", "COMPLETE"]


def test_without_the_extra_lineage_stays_off_and_the_job_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    store = lineage_store(tmp_path, {"transport": "file", "file": "lineage.jsonl"})
    monkeypatch.setitem(sys.modules, "openlineage.client", None)  # as if openlineage-python were not installed
    with caplog.at_level("ERROR", logger="ladle.monitor.lineage"):
        results = store.materialize(T0, T0 + timedelta(days=1), ["prices"])
    store.close()
    assert results[0].rows_written > 0
    assert not store.lineage.enabled
    assert "pip install 'ladle[lineage]'" in caplog.text
    assert not (tmp_path / "lineage.jsonl").exists()
