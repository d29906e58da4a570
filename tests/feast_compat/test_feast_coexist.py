"""With the real Feast installed in the same environment, Ladle's loader uses its own definitions
and other code importing ``feast`` still gets (and can use) the real Feast: proved in Feast's own venv."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from feast_compat.conftest import ladle_paths, run_feast

pytestmark = pytest.mark.feast_client

FEAST_REPO = Path(__file__).resolve().parents[1] / "e2e" / "feast_repo"

PROBE = """
import json, sys
src, site, repo = sys.argv[1:4]
sys.path.insert(0, src)
sys.path.append(site)  # Ladle's own dependencies that Feast's venv lacks come after Feast's
import feast
before = feast.FeatureView
from ladle.repo.loader import load_repo
contents = load_repo(repo)
import feast as after
from feast import Entity, FeatureView, Field, FileSource
from feast.types import Float32
real = FeatureView(
    name="trips", entities=[Entity(name="driver", join_keys=["driver_id"])],
    schema=[Field(name="conv_rate", dtype=Float32)],
    source=FileSource(path="x.parquet", timestamp_field="ts"),
)
print(json.dumps({
    "same_module": after is feast and FeatureView is before,
    "real_module": FeatureView.__module__,
    "real_proto": type(real.to_proto()).__name__,
    "feast_version": feast.__version__,
    "ladle_view_module": type(contents.feature_views[0]).__module__,
    "ladle_views": sorted(v.name for v in contents.feature_views),
}))
"""


def test_real_feast_is_untouched_around_a_ladle_load(feast_python: Path, tmp_path: Path) -> None:
    src, site = ladle_paths()
    done = run_feast(feast_python, ["-c", PROBE, src, site, str(FEAST_REPO)], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["same_module"] is True
    assert result["real_module"] == "feast.feature_view"
    assert result["real_proto"] == "FeatureView"
    assert result["feast_version"] == "0.67.0"
    assert result["ladle_view_module"] == "ladle.feast_shim.definitions"
    assert result["ladle_views"] == [
        "commodity_price_features",
        "commodity_price_stream",
        "economic_features",
        "weather_features",
    ]
