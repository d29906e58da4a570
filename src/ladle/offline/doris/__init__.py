"""The MySQL-protocol offline store: Apache Doris, StarRocks and MySQL/MariaDB (docs/offline.md)."""
