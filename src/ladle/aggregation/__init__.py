"""Executions of stream feature views (the semantics are in docs/streaming.md, "Semantics").

``batch``: the whole history at once, in DuckDB (backfills, training sets, materialization).
``incremental``: one Kafka partition's micro-batches in the stream process (``ladle stream``),
on NumPy state (``keys``, ``runs``, ``blocks``, ``windows``, ``frames``).
Pure: this package imports only the vocabulary (``ladle.definitions``, ``ladle.errors``,
``ladle.types``, ``ladle.times``) and third-party libraries.
"""
