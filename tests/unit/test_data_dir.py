"""The raw-data directory of a repo's ingestions: ``data_dir`` in feature_store.yaml, ``LADLE_DATA_DIR`` overrides."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner, Result

from ladle.cli.main import cli
from ladle.errors import DataDirError
from ladle.ingest.data_dir import RepoDataDir

REPO = """
import pyarrow.parquet as pq

from ladle import Entity, FeatureView, Field, FileSource, Float64, ValueType
from ladle.ingest import Ingestion
from ladle.ingest.data_dir import RepoDataDir

DATA_DIR = RepoDataDir(__file__)
commodity = Entity(name="commodity", join_keys=["commodity_code"], value_type=ValueType.STRING)
source = FileSource(name="prices_source", path="data/prices/", timestamp_field="event_timestamp")
prices = FeatureView(name="prices", entities=[commodity], source=source,
                     schema=[Field(name="current_price", dtype=Float64)])


def rows(window):
    return pq.read_table(DATA_DIR / "raw.parquet")


raw = Ingestion(name="raw", feature_view="prices", compute=rows)
"""

YAML = "project: data_dir_test\nregistry: data/registry.db\nonline_store: {type: sqlite, path: data/online.db}\n"


@pytest.fixture
def checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``checkout/repo`` (data_dir: ../raw) beside ``checkout/raw/raw.parquet``, like feature_repo and data/."""
    monkeypatch.delenv("LADLE_DATA_DIR", raising=False)
    repo = tmp_path / "checkout" / "repo"
    repo.mkdir(parents=True)
    (repo / "feature_store.yaml").write_text(YAML + "data_dir: ../raw\n")
    (repo / "repo.py").write_text(textwrap.dedent(REPO))
    raw = tmp_path / "checkout" / "raw"
    raw.mkdir()
    ts = pa.array([1_706_572_800_000_000] * 2, pa.timestamp("us", tz="UTC"))
    table = pa.table({"commodity_code": ["wti", "brent"], "event_timestamp": ts, "current_price": [70.0, 75.0]})
    pq.write_table(table, raw / "raw.parquet")
    return tmp_path / "checkout"


def ingest(repo: Path, env: dict[str, str] | None = None) -> Result:
    result = CliRunner().invoke(cli, ["-c", str(repo), "ingest", "-o", "json"], env=env)
    assert "Traceback" not in result.output
    return result


def one_line(result: Result) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 1 and len(lines) == 1, result.output
    return lines[0]


def test_data_dir_is_relative_to_the_repo(checkout: Path) -> None:
    result = ingest(checkout / "repo")
    assert result.exit_code == 0, result.output
    assert '"rows": 2' in result.stdout
    # Off a terminal there is no progress bar (no carriage returns in logs), unless asked for.
    assert "\r" not in result.output and "ingest raw" not in result.stderr
    forced = CliRunner().invoke(cli, ["-c", str(checkout / "repo"), "ingest", "--progress"])
    assert forced.exit_code == 0 and "ingest raw" in forced.stderr


def test_a_copied_repo_says_which_setting_to_change(checkout: Path, tmp_path: Path) -> None:
    copy = tmp_path / "elsewhere" / "x"
    shutil.copytree(checkout / "repo", copy)
    line = one_line(ingest(copy))
    assert "DataDirError" in line
    assert f"data directory {tmp_path / 'elsewhere' / 'raw'} does not exist" in line
    assert "data_dir: ../raw" in line and "LADLE_DATA_DIR" in line
    # The override is the fix, and plan/apply never needed the data.
    assert ingest(copy, {"LADLE_DATA_DIR": str(checkout / "raw")}).exit_code == 0
    assert CliRunner().invoke(cli, ["-c", str(copy), "plan"]).exit_code == 0


def test_the_environment_overrides_the_setting(checkout: Path, tmp_path: Path) -> None:
    line = one_line(ingest(checkout / "repo", {"LADLE_DATA_DIR": str(tmp_path / "nope")}))
    assert f"LADLE_DATA_DIR={tmp_path / 'nope'}" in line


def test_no_setting_names_the_key_to_add(checkout: Path) -> None:
    (checkout / "repo" / "feature_store.yaml").write_text(YAML)
    line = one_line(ingest(checkout / "repo"))
    assert "sets no data_dir" in line and "LADLE_DATA_DIR" in line
    with pytest.raises(DataDirError):
        RepoDataDir(checkout / "repo").resolve()


def test_it_is_a_path_wherever_one_is_expected(checkout: Path) -> None:
    data_dir = RepoDataDir(checkout / "repo" / "repo.py")
    assert Path(data_dir) == (checkout / "raw").resolve()
    assert (data_dir / "raw.parquet").is_file()


def test_the_platform_repo_copied_elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first-hour stumble itself: ``cp -r feature_repo /tmp/x && ladle -c /tmp/x ingest``."""
    monkeypatch.delenv("LADLE_DATA_DIR", raising=False)
    copy = tmp_path / "x"
    shutil.copytree(Path(__file__).resolve().parents[2] / "feature_repo", copy, ignore=shutil.ignore_patterns("data"))
    line = one_line(ingest(copy))
    yaml_file = copy / "feature_store.yaml"
    assert f"data directory {tmp_path / 'data'} does not exist (data_dir: ../data in {yaml_file})" in line


def test_a_data_dir_without_the_extracts_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The directory exists but holds none of the committed extracts: one line naming the fix, no traceback."""
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("LADLE_DATA_DIR", str(tmp_path / "empty"))
    copy = tmp_path / "x"
    shutil.copytree(Path(__file__).resolve().parents[2] / "feature_repo", copy, ignore=shutil.ignore_patterns("data"))
    line = one_line(ingest(copy))
    assert "DataSourceError: missing data extracts in" in line
    assert "LADLE_DATA_DIR" in line
    assert "ladle[data]" in line  # printed verbatim, not eaten as rich markup
