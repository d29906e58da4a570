"""Stream feature view computation: batch (DuckDB) and incremental (the stream process)."""
