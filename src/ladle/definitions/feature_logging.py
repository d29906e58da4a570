"""What a feature service declares to log the values it serves: Feast's ``LoggingConfig``.

>>> FeatureService(name="price_model", features=[prices],
...                logging_config=LoggingConfig(destination=FileLoggingDestination(path="data/logs/price_model"),
...                                             sample_rate=0.1))

``destination`` is optional in Ladle: without one the log goes to the offline store's default place
for the service (see :func:`ladle.monitor.feature_log.log_source` and docs/feature-logging.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ladle.errors import DefinitionError


class LoggingDestination:
    """Where a service's log rows are written; one subclass per kind of offline table."""

    kind = ""

    def to_spec(self) -> dict[str, Any]:
        """JSON-ready spec (``{"kind": ..., ...}``)."""
        return {"kind": self.kind, **vars(self)}

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and vars(other) == vars(self)

    def __hash__(self) -> int:
        return hash((self.kind, tuple(sorted(vars(self).items()))))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


def _text(kind: str, attr: str, value: object, required: bool = True) -> str:
    if not isinstance(value, str) or (required and not value.strip()):
        raise DefinitionError(f"{kind}: {attr} must be a non-empty string, got {value!r}")
    return value


class FileLoggingDestination(LoggingDestination):
    """A directory of Parquet files (one file per flush), relative to the repo (offline store ``file``).

    Feast's ``s3_endpoint_override`` and ``partition_by`` are accepted; only local paths are written.
    """

    kind = "file"

    def __init__(self, path: str, s3_endpoint_override: str = "", partition_by: list[str] | None = None) -> None:
        self.path = _text("FileLoggingDestination", "path", path)
        self.s3_endpoint_override = s3_endpoint_override
        self.partition_by = list(partition_by or [])


class IcebergLoggingDestination(LoggingDestination):
    """An Iceberg table ``namespace.table`` (offline store ``iceberg``), created on the first flush."""

    kind = "iceberg"

    def __init__(self, table: str) -> None:
        self.table = _text("IcebergLoggingDestination", "table", table)


class DorisLoggingDestination(LoggingDestination):
    """A table over the MySQL protocol (offline store ``doris``, ``starrocks`` or ``mysql``), created on first flush."""

    kind = "doris"

    def __init__(self, table: str, database: str = "") -> None:
        self.table = _text("DorisLoggingDestination", "table", table)
        self.database = database


_KINDS: dict[str, type[LoggingDestination]] = {
    c.kind: c for c in (FileLoggingDestination, IcebergLoggingDestination, DorisLoggingDestination)
}


class LoggingConfig:
    """Log a sample of what a feature service serves (Feast's ``LoggingConfig``).

    ``sample_rate`` in (0, 1] is the share of requests logged (all entity rows of a sampled request are
    logged). With ``deterministic=True`` the decision is a hash of the request id, so a retried request
    (same ``X-Request-ID``) is sampled the same way; otherwise it is random per request.
    """

    def __init__(
        self, destination: LoggingDestination | None = None, sample_rate: float = 1.0, deterministic: bool = False
    ) -> None:
        if destination is not None and not isinstance(destination, LoggingDestination):
            raise DefinitionError(f"LoggingConfig: destination must be a logging destination, got {destination!r}")
        if isinstance(sample_rate, bool) or not isinstance(sample_rate, int | float) or not 0 < sample_rate <= 1:
            raise DefinitionError(f"LoggingConfig: sample_rate must be a number in (0, 1], got {sample_rate!r}")
        self.destination = destination
        self.sample_rate = float(sample_rate)
        self.deterministic = bool(deterministic)

    def to_spec(self) -> dict[str, Any]:
        """JSON-ready spec as stored in the registry."""
        return {
            "destination": self.destination.to_spec() if self.destination is not None else None,
            "sample_rate": self.sample_rate,
            "deterministic": self.deterministic,
        }

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> LoggingConfig:
        """Rebuild from :meth:`to_spec` output."""
        raw = spec.get("destination")
        destination = None
        if raw is not None:
            args = {k: v for k, v in raw.items() if k != "kind"}
            destination = _KINDS[raw["kind"]](**args)
        return cls(destination, spec.get("sample_rate", 1.0), spec.get("deterministic", False))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LoggingConfig) and self.to_spec() == other.to_spec()

    def __hash__(self) -> int:
        return hash((self.destination, self.sample_rate, self.deterministic))

    def __repr__(self) -> str:
        return f"LoggingConfig(destination={self.destination!r}, sample_rate={self.sample_rate})"
