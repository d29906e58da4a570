"""``ladle erase`` on real stores: SQLite + Parquet, Redis, Iceberg (SQLite catalog), MariaDB.

Each case builds the same repo (tests/unit/feature_log_repo.py), serves the logged service so the
entity is in the feature log too, erases one commodity and checks that no trace remains: online
reads say NOT_FOUND, raw offline scans and point-in-time retrieval find no row, the log has no row,
while the other commodities are untouched.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from click.testing import CliRunner

from ladle import ALL_ACTIONS, AuthzedAction, FeatureStore, FeatureView, Permission, RoleBasedPolicy
from ladle.cli.main import cli
from ladle.errors import EntityKeyError, PermissionDeniedError
from ladle.security.principal import Principal
from unit.feature_log_repo import CODES, EVENT_TIME, OLDER, VENUES, build, entity_rows

VICTIM = "brent"


def _serve_everything(store: FeatureStore) -> None:
    service = store.snapshot().feature_service("price_model")
    store.get_online_features(service, entity_rows([(c, v) for c in CODES for v in VENUES]))
    store.feature_logger.flush()


def _offline_rows(store: FeatureStore, view: str) -> pd.DataFrame:
    fv = store.snapshot().feature_view(view)
    batches = list(store.offline_store.pull_all(fv, OLDER - timedelta(days=1), EVENT_TIME + timedelta(days=1)))
    return pd.concat([b.to_pandas() for b in batches]) if batches else pd.DataFrame({"commodity_code": []})


def _assert_gone(store: FeatureStore) -> None:
    service = store.snapshot().feature_service("price_model")
    read = store.get_online_features(service, entity_rows([(VICTIM, v) for v in VENUES] + [("gold", "ICE")]))
    statuses = {k: [s.name for s in v] for k, v in read.statuses_dict().items()}
    assert statuses["current_price"] == ["NOT_FOUND", "NOT_FOUND", "PRESENT"]
    assert statuses["spread"] == ["NOT_FOUND", "NOT_FOUND", "PRESENT"]
    for view in ("prices", "venue_prices"):
        rows = _offline_rows(store, view)
        assert VICTIM not in set(rows["commodity_code"]) and "gold" in set(rows["commodity_code"])
    entity_df = pd.DataFrame(
        {"commodity_code": [VICTIM, "gold"], "event_timestamp": [EVENT_TIME + timedelta(hours=1)] * 2}
    )
    training = store.get_historical_features(entity_df, ["prices:current_price"]).to_df()
    by_code = training.set_index("commodity_code")["current_price"]
    assert pd.isna(by_code[VICTIM]) and not pd.isna(by_code["gold"])
    # Reading the service again logged the victim's NOT_FOUND rows: erase the log once more, then check it.
    store.erase_entity({"commodity_code": VICTIM})
    log = store.get_feature_log("price_model").to_pandas()
    assert VICTIM not in set(log["commodity_code"]) and "gold" in set(log["commodity_code"])


def _check_erasure(store: FeatureStore) -> dict[str, int]:
    _serve_everything(store)
    dry = store.erase_entity({"commodity_code": VICTIM}, dry_run=True)
    assert dry.total > 0
    assert VICTIM in set(store.get_feature_log("price_model").to_pandas()["commodity_code"])  # nothing deleted
    report = store.erase_entity({"commodity": VICTIM})  # the entity's name works for its join key
    found = {(r.store, r.table): r.rows for r in report.removals}
    assert found == {(r.store, r.table): r.rows for r in dry.removals}
    assert found[("offline", "prices_src")] == 2  # two events of brent
    assert found[("offline", "venue_src")] == len(VENUES)
    assert found[("feature_log", "price_model")] == len(VENUES)
    assert found[("online", "prices")] == 1
    assert found[("online", "venue_prices")] == len(VENUES)
    again = store.erase_entity({"commodity_code": VICTIM})
    assert again.total == 0
    _assert_gone(store)
    return {f"{s}:{t}": n for (s, t), n in found.items()}


@pytest.fixture
def sqlite_parquet(tmp_path: Path) -> Iterator[FeatureStore]:
    store = build(tmp_path, {"type": "sqlite", "path": "data/online.db"})
    yield store
    store.close()


def test_erase_on_sqlite_and_parquet_leaves_no_trace(sqlite_parquet: FeatureStore) -> None:
    _check_erasure(sqlite_parquet)


def test_a_composite_entity_erases_only_that_pair(sqlite_parquet: FeatureStore) -> None:
    report = sqlite_parquet.erase_entity({"commodity_code": "gold", "venue": "ICE"})
    found = {(r.store, r.table): r.rows for r in report.removals}
    assert found == {("offline", "venue_src"): 1, ("online", "venue_prices"): 1, ("feature_log", "price_model"): 0}
    read = sqlite_parquet.get_online_features(
        ["venue_prices:spread"], entity_rows([("gold", "ICE"), ("gold", "NYMEX")])
    )
    assert [s.name for s in read.statuses_dict()["spread"]] == ["NOT_FOUND", "PRESENT"]


def test_bad_arguments_change_nothing(sqlite_parquet: FeatureStore) -> None:
    with pytest.raises(EntityKeyError, match="neither a join key nor an entity"):
        sqlite_parquet.erase_entity({"commodity_code": VICTIM, "ticker": "x"})
    with pytest.raises(EntityKeyError, match="no entity given"):
        sqlite_parquet.erase_entity({})
    assert sqlite_parquet.erase_entity({"commodity_code": VICTIM}, dry_run=True).total > 0


def test_erasure_needs_write_permissions_on_every_touched_view(sqlite_parquet: FeatureStore) -> None:
    store = sqlite_parquet
    store.apply(
        [
            Permission(
                "price_writers",
                types=[FeatureView],
                name_patterns=["prices"],
                actions=[AuthzedAction.WRITE_ONLINE, AuthzedAction.WRITE_OFFLINE],
                policy=RoleBasedPolicy(roles=["writer"]),
            ),
            Permission("admins", actions=ALL_ACTIONS, policy=RoleBasedPolicy(roles=["admin"])),
        ]
    )
    before = store.erase_entity({"commodity_code": VICTIM}, dry_run=True).total
    store.__dict__["principal"] = Principal("w", roles=frozenset({"writer"}), method="api_key")
    with pytest.raises(PermissionDeniedError, match="venue_prices"):  # may write prices, not venue_prices
        store.erase_entity({"commodity_code": VICTIM})
    store.__dict__["principal"] = Principal("root", roles=frozenset({"admin"}), method="api_key")
    assert store.erase_entity({"commodity_code": VICTIM}, dry_run=True).total == before  # nothing was deleted
    assert store.erase_entity({"commodity_code": VICTIM}).total == before


def test_the_cli_reports_per_table_and_fails_on_bad_input_with_one_line(sqlite_parquet: FeatureStore) -> None:
    runner = CliRunner()
    repo = str(sqlite_parquet.repo_path)
    yaml = sqlite_parquet.repo_path / "feature_store.yaml"
    yaml.write_text(json.dumps(_yaml_config(sqlite_parquet)))
    bad = runner.invoke(cli, ["-c", repo, "erase", "--entity", "commodity_code"])
    assert bad.exit_code == 1 and "join_key=value" in bad.output and "Traceback" not in bad.output
    dry = runner.invoke(cli, ["-c", repo, "erase", "-e", f"commodity_code={VICTIM}", "--dry-run", "-o", "json"])
    assert dry.exit_code == 0, dry.output
    rows = json.loads(dry.output)
    assert {r["table"]: r["rows"] for r in rows if r["store"] == "offline"} == {"prices_src": 2, "venue_src": 2}
    done = runner.invoke(cli, ["-c", repo, "erase", "-e", f"commodity_code={VICTIM}", "-o", "json"])
    assert done.exit_code == 0 and sum(r["rows"] for r in json.loads(done.output)) == sum(r["rows"] for r in rows)
    nothing = runner.invoke(cli, ["-c", repo, "erase", "-e", "commodity_code=unknown_code"])
    assert nothing.exit_code == 0 and "removed 0 rows" in nothing.output


def _yaml_config(store: FeatureStore) -> dict[str, Any]:
    return {
        "project": store.project,
        "registry": {"path": str(store.repo_path / "data" / "registry.db")},
        "online_store": {"type": "sqlite", "path": "data/online.db"},
        "offline_store": {"type": "duckdb"},
    }


@pytest.mark.redis
def test_erase_on_redis_leaves_no_trace(tmp_path: Path, redis_address: str) -> None:
    store = build(tmp_path, {"type": "redis", "connection_string": redis_address}, tag=uuid.uuid4().hex[:8])
    try:
        _check_erasure(store)
    finally:
        store.online_store.teardown(store.project, list(store.snapshot().feature_views.values()))
        store.close()


@pytest.mark.iceberg
def test_erase_on_iceberg_leaves_no_trace(tmp_path: Path) -> None:
    store = build(tmp_path, {"type": "sqlite", "path": "data/online.db"}, {"type": "iceberg", "threads": 1}, tag="ice")
    try:
        _check_erasure(store)
    finally:
        store.close()


@pytest.mark.mariadb
@pytest.mark.doris
def test_erase_on_mariadb_leaves_no_trace(tmp_path: Path) -> None:
    from backends.test_doris_mariadb import admin_connection, mariadb_block

    admin = admin_connection()
    database = f"ladle_test_{uuid.uuid4().hex[:12]}"
    with admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{database}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    try:
        store = build(tmp_path, {"type": "sqlite", "path": "data/online.db"}, mariadb_block(database), tag="m")
        try:
            _check_erasure(store)
        finally:
            store.close()
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{database}`")
        admin.close()
