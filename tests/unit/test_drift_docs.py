"""docs/monitoring.md and docs/configuration.md cannot drift from the monitoring code."""

from __future__ import annotations

from pathlib import Path

from ladle.cli.monitor import monitor
from ladle.config import MonitoringConfig
from ladle.monitor.report_metrics import METRIC_NAMES
from ladle.server.metrics import METRIC_NAMES as SERVER_METRIC_NAMES

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_every_monitoring_setting_is_documented() -> None:
    text = (DOCS / "configuration.md").read_text()
    missing = [name for name in MonitoringConfig.model_fields if f"`{name}`" not in text]
    assert not missing, f"monitoring keys missing from docs/configuration.md: {missing}"


def test_every_monitor_metric_and_command_is_documented() -> None:
    text = (DOCS / "monitoring.md").read_text()
    assert set(METRIC_NAMES) <= set(SERVER_METRIC_NAMES)
    assert [m for m in METRIC_NAMES if f"`{m}`" not in text] == []
    assert [c for c in monitor.commands if f"ladle monitor {c}" not in text] == []
