"""Online stores: the protocol and its backends (SQLite embedded, Redis, Redis Cluster)."""
