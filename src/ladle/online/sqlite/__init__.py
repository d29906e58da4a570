"""The embedded SQLite online store: only SQLite's I/O (connections, transactions, SQL).

The store class is ``ladle.online.sqlite.store.SqliteOnlineStore`` (entry point ``sqlite``); see
docs/online.md.
"""
