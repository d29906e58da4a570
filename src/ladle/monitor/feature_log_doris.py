"""Feature log tables on MySQL-protocol offline stores (Doris, StarRocks, MySQL/MariaDB): created on first flush."""

from __future__ import annotations

import pyarrow as pa

from ladle.config import RepoConfig
from ladle.definitions import DorisSource
from ladle.errors import DataSourceError
from ladle.monitor.feature_log_table import LOG_TIME, REQUEST_ID

_CREATED: set[tuple[str, str]] = set()


def ensure_table(config: RepoConfig, source: DorisSource, schema: pa.Schema) -> None:
    """Create the log table of ``source`` for ``schema`` unless it exists (checked once per process)."""
    from ladle.offline.doris.load import create_table, table_columns
    from ladle.offline.doris.store import DorisOfflineStore

    block = config.offline_store
    database = source.database or str(getattr(block, "database", ""))
    token = (database, source.table)
    if token in _CREATED:
        return
    store = DorisOfflineStore(config)
    try:
        table_columns(block, store._source(source))
    except DataSourceError:
        create_table(block, database, source.table, schema, [REQUEST_ID], LOG_TIME)
    _CREATED.add(token)
