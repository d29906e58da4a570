"""Offline stores: the protocol and its backends (Parquet + DuckDB embedded; Iceberg, Doris later)."""
