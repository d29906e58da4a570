"""Apache Iceberg offline store (``offline_store: {type: iceberg}``), through pyiceberg; see docs/iceberg.md."""
