"""Fixtures of the backend-specific tests: the shared Redis Cluster and per-test Redis stores."""

from __future__ import annotations

from redis_cluster_plugin import redis_cluster_nodes

__all__ = ["redis_cluster_nodes"]
