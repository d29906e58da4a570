"""Read a Feast registry into one ``Registry`` message: the protobuf file, or Feast's SQL tables.

A location is a file path (a protobuf ``registry.db``, or a SQLite database holding Feast's SQL
registry, told apart by the SQLite header) or a SQLAlchemy URL (``sqlite:///…``, ``postgresql://…``).
In the SQL registry each row holds one serialized object of one project; rows become the
repeated fields of the same ``Registry`` message the file registry holds, so the rest of the
importer sees one shape.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ladle.errors import BackendError, ConfigError
from ladle.feast_import._proto import message_class, parse

_SQLITE_HEADER = b"SQLite format 3\x00"
# Feast SQL registry table -> (Registry field, proto column, message name). Table and column names are Feast's.
SQL_TABLES: dict[str, tuple[str, str, str]] = {
    "projects": ("projects", "project_proto", "Project"),
    "entities": ("entities", "entity_proto", "Entity"),
    "data_sources": ("data_sources", "data_source_proto", "DataSource"),
    "feature_views": ("feature_views", "feature_view_proto", "FeatureView"),
    "stream_feature_views": ("stream_feature_views", "feature_view_proto", "StreamFeatureView"),
    "on_demand_feature_views": ("on_demand_feature_views", "feature_view_proto", "OnDemandFeatureView"),
    "feature_services": ("feature_services", "feature_service_proto", "FeatureService"),
    "saved_datasets": ("saved_datasets", "saved_dataset_proto", "SavedDataset"),
    "validation_references": ("validation_references", "validation_reference_proto", "ValidationReference"),
    "permissions": ("permissions", "permission_proto", "Permission"),
}


def read_registry(location: str) -> Any:
    """The Feast registry at ``location`` as one ``Registry`` message (every project in it)."""
    if "://" in location:
        if location.split("://", 1)[0] in ("s3", "gs", "az", "abfs", "http", "https"):
            raise ConfigError(f"{location}: copy the Feast registry to a local file first (remote files are not read)")
        return _read_sql(location)
    path = Path(location)
    if not path.is_file():
        raise ConfigError(f"no Feast registry at {path}")
    data = path.read_bytes()
    if data.startswith(_SQLITE_HEADER):
        return _read_sql(f"sqlite:///{path.resolve()}")
    from google.protobuf.message import DecodeError

    try:
        return parse("Registry", data)
    except DecodeError as exc:
        raise ConfigError(f"{path} is not a Feast registry (protobuf Registry or SQL registry): {exc}") from None


def _engine_url(url: str) -> str:
    for plain in ("postgresql://", "postgres://"):
        if url.startswith(plain):
            return "postgresql+psycopg://" + url[len(plain) :]
    return url


def _with_project(message: Any, project: str) -> Any:
    # The SQL registry keeps the project in its project_id column; the protos may leave it empty.
    holder = message.spec if "spec" in message.DESCRIPTOR.fields_by_name else message
    if "project" in holder.DESCRIPTOR.fields_by_name and not holder.project:
        holder.project = project
    return message


def _read_sql(url: str) -> Any:
    import sqlalchemy as sa

    engine = sa.create_engine(_engine_url(url))
    registry = message_class("Registry")()
    try:
        with engine.connect() as conn:
            inspector = sa.inspect(conn)
            present = set(inspector.get_table_names())
            views = inspector.get_columns("feature_views") if "feature_views" in present else []
            columns = {c["name"] for c in views}
            if "entities" not in present or "feature_view_proto" not in columns:
                raise ConfigError(f"{url}: not a Feast SQL registry (no Feast tables such as feature_views)")
            for table, (field, column, message) in SQL_TABLES.items():
                if table not in present:
                    continue
                rows = conn.execute(sa.text(f"SELECT {column}, project_id FROM {table}"))
                getattr(registry, field).extend(_with_project(parse(message, bytes(b)), p) for b, p in rows if b)
    except sa.exc.SQLAlchemyError as exc:
        raise BackendError(f"cannot read the Feast SQL registry at {engine.url!r}: {exc}") from exc
    finally:
        engine.dispose()
    return registry
