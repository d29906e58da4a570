"""Trusting the features: what was served, whether it drifted, whether online matches offline.

Modules (each owns one capability; the CLI group is ``ladle monitor``):

* ``feature_log``: sampled, asynchronous logging of served features to the offline store.
* ``drift``, ``skew``, ``freshness``: reports stored through :mod:`ladle.registry.reports`
  and exported as Prometheus metrics.
* ``lineage``: OpenLineage run events for apply, ingest, materialization, streams and retrieval.
* ``erase``: per-entity erasure across the online store, the offline store and the feature logs.
"""
