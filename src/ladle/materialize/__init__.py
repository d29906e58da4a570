"""Materialization: the newest offline rows per entity into the online store, with watermarks.

``local`` runs in this process (DuckDB reads, the online store writes); see docs/online.md for the
rules (windows, incremental watermarks, late data).
"""

from __future__ import annotations

from ladle.materialize.local import Materializer, ViewResult

__all__ = ["Materializer", "ViewResult"]
