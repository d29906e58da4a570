"""Ingestion: compute feature rows from raw data and store them offline, idempotently."""

from __future__ import annotations

from ladle.ingest.job import Ingestion, IngestResult, IngestWindow, run_ingestion

__all__ = ["IngestResult", "IngestWindow", "Ingestion", "run_ingestion"]
