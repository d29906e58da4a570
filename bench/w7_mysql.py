"""W7 on the MySQL-protocol store: W4 (100,000 entity rows x 1,000,000 ticks, 8 features) on MariaDB.

The ticks (``bench/data``, the very rows W4 reads from Parquet) are loaded once into a MariaDB
table with ``LOAD DATA LOCAL INFILE``; later runs reuse it when its row count matches. Two layouts
(``--layout``): ``index`` (default), ``ladle_w7.commodity_ticks`` with a secondary index
``__ladle_pit (commodity_code, event_timestamp, created)``; ``clustered``,
``ladle_w7.commodity_ticks_clustered`` with ``PRIMARY KEY (commodity_code, event_timestamp, id)``,
so the winning rows' features are read from the index the lookup descends. The timed part
runs in a child process (its peak RSS is the client's own: the server's memory is not in it):
``get_historical_features(...).to_df()`` with ``offline_store: {type: mysql, ...}`` and a
FileSource named after the table. The parent checks the result with
W4's pandas ``merge_asof`` reference and prints the server's EXPLAIN of the query, checking that
the ticks index is used.

    .venv/bin/python -m bench.w7_mysql                    # MariaDB at 127.0.0.1:3306, root
    .venv/bin/python -m bench.w7_mysql --layout clustered # the table clustered on (key, time)
    .venv/bin/python -m bench.w7_mysql --strategy window  # the window-function plan instead
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import Timer, emit, peak_rss_mb, rss_mb, run_child, summarize
from bench.data import DEFAULT_DIR, FEATURES, TickSpec, ensure_entity_df, ensure_ticks
from bench.w4_historical import VIEW, check, w4_store

DATABASE = "ladle_w7"
#: Two layouts of the same rows: a secondary index on (key, time, created) over a heap without a
#: primary key, or the table clustered on (key, time) (InnoDB PRIMARY KEY (key, time, id)).
LAYOUTS = {
    "index": ("commodity_ticks", "__ladle_pit", "INDEX `__ladle_pit` (`commodity_code`, `event_timestamp`, `created`)"),
    "clustered": (
        "commodity_ticks_clustered",
        "PRIMARY",
        "`id` BIGINT NOT NULL AUTO_INCREMENT, PRIMARY KEY (`commodity_code`, `event_timestamp`, `id`), KEY (`id`)",
    ),
}


def _block(args: argparse.Namespace) -> dict[str, Any]:
    block: dict[str, Any] = {
        "type": "mysql",
        "host": args.host,
        "port": args.port,
        "user": args.user,
        "database": DATABASE,
    }
    if args.strategy != "auto":
        block["pit_strategy"] = args.strategy
    return block


def load_ticks(args: argparse.Namespace, ticks: Path) -> dict[str, Any]:
    """Create and fill the ticks table unless it already holds the file's rows; returns what was done."""
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq
    import pymysql

    table = pq.read_table(ticks)
    name, _, index = LAYOUTS[args.layout]
    con = pymysql.connect(host=args.host, port=args.port, user=args.user, local_infile=True, autocommit=True)
    try:
        with con.cursor() as cur:
            cur.execute("SET time_zone = '+00:00'")
            cur.execute(f"CREATE DATABASE IF NOT EXISTS `{DATABASE}`")
            cur.execute(
                "SELECT TABLE_ROWS FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s",
                (DATABASE, name),
            )
            found = cur.fetchone()
            if found is not None:
                cur.execute(f"SELECT COUNT(*) FROM `{DATABASE}`.`{name}`")
                counted = cur.fetchone()
                if counted is not None and counted[0] == table.num_rows:
                    return {"loaded": False, "rows": table.num_rows}
                cur.execute(f"DROP TABLE `{DATABASE}`.`{name}`")
            features = ", ".join(f"`{f}` DOUBLE" for f in FEATURES)
            cur.execute(
                f"CREATE TABLE `{DATABASE}`.`{name}` (`commodity_code` VARCHAR(16) COLLATE utf8mb4_bin NOT NULL, "
                f"`event_timestamp` DATETIME(6) NOT NULL, `created` DATETIME(6), {features}, {index}) ENGINE=InnoDB"
            )
            with tempfile.TemporaryDirectory() as tmp:
                csv = Path(tmp) / "ticks.csv"
                naive = table
                for column in ("event_timestamp", "created"):
                    i = naive.column_names.index(column)
                    naive = naive.set_column(i, column, naive.column(i).cast("timestamp[us]"))
                pcsv.write_csv(naive, csv, pcsv.WriteOptions(include_header=False, quoting_style="none"))
                with Timer() as t:
                    cur.execute(
                        f"LOAD DATA LOCAL INFILE %s INTO TABLE `{DATABASE}`.`{name}` FIELDS TERMINATED BY ',' "
                        f"({', '.join(f'`{c}`' for c in naive.column_names)})",
                        (str(csv),),
                    )
                cur.execute(f"ANALYZE TABLE `{DATABASE}`.`{name}`")
                cur.fetchall()
    finally:
        con.close()
    return {"loaded": True, "rows": table.num_rows, "load_s": round(t.seconds, 2)}


def upload_comparison(args: argparse.Namespace, entity_df: Path) -> dict[str, float]:
    """Seconds to put the entity frame's work-table rows on the server: multi-row INSERTs (what the
    store does, ``upload_batch_rows`` 10,000) against ``LOAD DATA LOCAL INFILE`` of a CSV."""
    import uuid

    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq
    import pymysql

    from ladle.offline.doris.values import parameter_rows

    frame = pq.read_table(entity_df)
    stamps = frame.column("event_timestamp").cast(pa.timestamp("us"))
    rows = pa.table(
        {
            "__ladle_row": pa.array(range(frame.num_rows), pa.int64()),
            "__ladle_k0": frame.column("commodity_code"),
            "__ladle_t": stamps,
            "__ladle_lo0": stamps,
        }
    )
    ddl = (
        "CREATE TABLE `{}` (`__ladle_row` BIGINT NOT NULL, `__ladle_k0` VARCHAR(16) COLLATE utf8mb4_bin, "
        "`__ladle_t` DATETIME(6) NOT NULL, `__ladle_lo0` DATETIME(6), PRIMARY KEY (`__ladle_row`))"
    )
    out: dict[str, float] = {}
    con = pymysql.connect(
        host=args.host, port=args.port, user=args.user, database=DATABASE, local_infile=True, autocommit=True
    )
    try:
        with con.cursor() as cur, tempfile.TemporaryDirectory() as tmp:
            for method in ("insert", "load_data_local_infile"):
                name = f"__ladle_w_{uuid.uuid4().hex[:12]}"
                cur.execute(ddl.format(name))
                with Timer() as t:
                    if method == "insert":
                        params = parameter_rows(rows)
                        for offset in range(0, len(params), 10_000):
                            cur.executemany(
                                f"INSERT INTO `{name}` VALUES (%s, %s, %s, %s)", params[offset : offset + 10_000]
                            )
                    else:
                        csv = Path(tmp) / "entity.csv"
                        pcsv.write_csv(rows, csv, pcsv.WriteOptions(include_header=False, quoting_style="none"))
                        cur.execute(
                            f"LOAD DATA LOCAL INFILE %s INTO TABLE `{name}` FIELDS TERMINATED BY ','", (str(csv),)
                        )
                out[f"{method}_s"] = round(t.seconds, 3)
                cur.execute(f"DROP TABLE `{name}`")
    finally:
        con.close()
    return out


def _store(repo: Path, args: argparse.Namespace) -> Any:
    # The source is the MySQL table of the layout (a FileSource is the table of its name there).
    return w4_store(
        repo, "unused.parquet", args.ttl_hours, _block(args), project="w7", source_name=LAYOUTS[args.layout][0]
    )


def child(args: argparse.Namespace) -> None:
    """The measured process: prints one JSON line (and writes the result and the EXPLAIN)."""
    import pyarrow.parquet as pq

    with tempfile.TemporaryDirectory() as tmp:
        store = _store(Path(tmp), args)
        entity_df = pq.read_table(args.entity_df).to_pandas()
        refs = [f"{VIEW}:{f}" for f in FEATURES]
        store.snapshot()
        rss_before = rss_mb()
        runs, cpu = [], []
        result = None
        for _ in range(args.repeat):
            cpu_start = time.process_time()
            with Timer() as t:
                result = store.get_historical_features(entity_df=entity_df, features=refs).to_df()
            runs.append(t.seconds)
            cpu.append(time.process_time() - cpu_start)
        peak = peak_rss_mb()
        assert result is not None
        result.to_parquet(args.result)
        job = store.get_historical_features(entity_df=entity_df, features=refs)
        plan = job.explain()
        Path(args.explain).write_text(json.dumps({"sql": job.sql, "plan": plan}, default=str))
        store.close()
    print(json.dumps({"runs_s": runs, "cpu_s": cpu, "rss_before_mb": rss_before, "peak_rss_mb": peak}))


def index_use(plan: list[dict[str, Any]], layout: str) -> dict[str, Any]:
    """Which plan rows read the ticks table, and whether every one of them uses the layout's index."""
    index = LAYOUTS[layout][1]
    reads = [row for row in plan if row.get("table") == "s"]
    return {
        "ticks_reads": [
            {k: row.get(k) for k in ("id", "select_type", "type", "key", "rows", "Extra")} for row in reads
        ],
        "index_used": bool(reads) and all(row.get("key") == index for row in reads),
    }


def main(argv: list[str] | None = None) -> int:
    """Run W7 on MariaDB (child process for timing and RSS; check and EXPLAIN in the parent)."""
    parser = argparse.ArgumentParser(description="W7: W4 on the MySQL-protocol offline store (MariaDB)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DIR)
    parser.add_argument("--entity-rows", type=int, default=100_000)
    parser.add_argument("--ttl-hours", type=float, default=24 * 30)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3306)
    parser.add_argument("--user", default="root")
    parser.add_argument("--strategy", choices=["auto", "lookup", "window"], default="auto")
    parser.add_argument("--layout", choices=sorted(LAYOUTS), default="index", help="ticks table layout")
    parser.add_argument("--upload-only", action="store_true", help="only time INSERT vs LOAD DATA of the entity rows")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--entity-df", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--explain", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args)
        return 0
    spec = TickSpec()
    ticks = ensure_ticks(args.data, spec)
    entity_df = ensure_entity_df(args.data, spec, args.entity_rows)
    loading = load_ticks(args, ticks)
    if args.upload_only:
        emit({"workload": "W7 entity upload", "entity_rows": args.entity_rows, **upload_comparison(args, entity_df)})
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        result, explain = Path(tmp) / "result.parquet", Path(tmp) / "explain.json"
        child_args = [
            "--child", "--entity-df", str(entity_df), "--result", str(result), "--explain", str(explain),
            "--repeat", str(args.repeat), "--ttl-hours", str(args.ttl_hours), "--host", args.host,
            "--port", str(args.port), "--user", args.user, "--strategy", args.strategy,
            "--layout", args.layout,
        ]  # fmt: skip
        measured = run_child("bench.w7_mysql", child_args)
        correctness = check(result, ticks, entity_df, args.ttl_hours)
        plan = json.loads(explain.read_text())
    print(plan["sql"], file=sys.stderr)
    for row in plan["plan"]:
        print(row, file=sys.stderr)
    indexes = index_use(plan["plan"], args.layout)
    emit(
        {
            "workload": "W7",
            "engine": "ladle, offline_store type mysql (MariaDB)",
            "what": f"get_historical_features(...).to_df(), {len(FEATURES)} features, ttl {args.ttl_hours} h",
            "strategy": args.strategy,
            "layout": args.layout,
            "entity_rows": args.entity_rows,
            "source_rows": spec.rows,
            "ticks_table": loading,
            "cold_s": measured["runs_s"][0],
            "wall_s": summarize(measured["runs_s"]),
            "cpu_s_client": summarize(measured["cpu_s"]),
            "peak_rss_mb_client": measured["peak_rss_mb"],
            "rss_before_first_call_mb": measured["rss_before_mb"],
            "plan": indexes,
            "correctness": correctness,
        }
    )
    return 0 if correctness["ok"] and indexes["index_used"] else 1


if __name__ == "__main__":
    sys.exit(main())
