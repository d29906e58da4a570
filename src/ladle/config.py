"""``feature_store.yaml`` (Feast's keys) and its dict form, validated with clear errors.

Discovery: ``FeatureStore(repo_path=...)`` reads ``<repo_path>/feature_store.yaml``; ``config=`` takes
the same content as a dict (or a :class:`RepoConfig`). ``${VAR}`` and ``${VAR:-default}`` are expanded
from the environment in every string. Relative paths are relative to the repo directory.

Backend blocks (``online_store``, ``offline_store``) are validated by the backend's own config model,
found through its entry point; its ``type`` selects it.
"""

from __future__ import annotations

import os
import re
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ladle.errors import ConfigError
from ladle.plugins import load_backend

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_PROJECT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_]*$")


class StrictModel(BaseModel):
    """Base for config models: unknown keys are errors, values are not coerced across kinds."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class RegistryConfig(StrictModel):
    """``registry:`` block. A bare string is a path (SQLite) or a SQLAlchemy URL."""

    registry_type: Literal["sql", "file"] = Field(
        "sql", description="'sql' (SQLite or PostgreSQL); 'file' is read as sql"
    )
    path: str = Field("data/registry.db", description="SQLite file path or SQLAlchemy URL")
    cache_ttl_seconds: float = Field(
        60, ge=0, description="how long readers reuse a loaded registry; 0 = never refresh"
    )
    cache_mode: Literal["sync", "thread"] = Field("thread", description="'thread' refreshes in the background")
    sqlalchemy_config_kwargs: dict[str, Any] = Field(default_factory=dict, description="passed to create_engine")

    def url(self, repo_path: Path) -> str:
        """The SQLAlchemy URL (SQLite paths made absolute, ``postgresql://`` given the psycopg driver)."""
        path = self.path
        if path.startswith("postgresql://") or path.startswith("postgres://"):
            return "postgresql+psycopg://" + path.split("://", 1)[1]
        if "://" in path:
            return path
        full = Path(path) if Path(path).is_absolute() else repo_path / path
        return f"sqlite:///{full}"


class ServerTlsConfig(StrictModel):
    """``feature_server: tls:`` (``ladle serve`` flags override; relative paths are relative to the repo)."""

    cert: str = Field(description="PEM certificate chain")
    key: str = Field(description="PEM private key of the certificate")
    client_ca: str | None = Field(None, description="PEM CA bundle client certificates must chain to")
    client_auth: Literal["required", "optional"] = "required"


class FeatureLoggingConfig(StrictModel):
    """``feature_server: feature_logging:`` how served features are queued and flushed (docs/feature-logging.md)."""

    enabled: bool = Field(True, description="log services that declare a logging_config (false: log nothing)")
    queue_capacity: int = Field(10_000, gt=0, description="requests held in memory; past it requests are dropped")
    flush_interval_secs: float = Field(5.0, gt=0, description="the background flusher writes at least this often")
    flush_requests: int = Field(20_000, gt=0, description="the flusher writes as soon as this many requests wait")
    cpu_budget: float | None = Field(
        0.01,
        gt=0,
        le=1,
        description="most CPU a serving process's logging (its writer included) may take, as a share of one "
        "core; sample rates are scaled down to stay within it (null: log at the configured rates whatever the cost)",
    )
    write_to_disk_interval_secs: float | None = Field(None, description="Feast's key (accepted; flush_interval_secs)")
    emit_timeout_micro_secs: int | None = Field(None, description="Feast's key (accepted; Ladle never blocks)")


class FeatureServerConfig(StrictModel):
    """``feature_server:`` block (server defaults; CLI flags override)."""

    type: Literal["local", "http"] = "local"
    enabled: bool = True
    max_entities_per_request: int = Field(10_000, gt=0, description="larger requests get 413 / INVALID_ARGUMENT")
    max_body_bytes: int = Field(10 * 1024 * 1024, gt=0, description="larger bodies get 413")
    metrics: dict[str, Any] = Field(default_factory=dict, description="Feast's metrics toggles (accepted)")
    tls: ServerTlsConfig | None = Field(None, description="TLS on both server ports (docs/security.md)")
    feature_logging: FeatureLoggingConfig = Field(
        default_factory=FeatureLoggingConfig, description="served-feature logging (docs/feature-logging.md)"
    )


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def parse_size(text: str | int) -> int:
    """Bytes of ``'512MB'``, ``'1.5GB'``, ``'2GiB'`` or an integer (units are powers of 1024).

    >>> parse_size("1GB")
    1073741824
    """
    if isinstance(text, int):
        return text
    match = _SIZE.match(text)
    if not match:
        raise ConfigError(f"invalid size {text!r}: write a number with a unit, e.g. '512MB' or '2GB'")
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])


class MaterializationConfig(StrictModel):
    """``materialization:`` block."""

    online_write_batch_size: int = Field(50_000, gt=0, description="rows per online write batch")
    pull_latest_features: bool = True
    memory_budget: str = Field(
        "2GB",
        description="memory a materialization or a historical retrieval may use in one process, e.g. '1GB'; "
        "beyond it the work is cut into entity-hash chunks",
    )

    @field_validator("memory_budget")
    @classmethod
    def _size(cls, value: str) -> str:
        try:
            parse_size(value)
        except ConfigError as exc:
            raise ConfigError(f"invalid configuration: materialization.memory_budget: {exc}") from None
        return value


class BatchEngineConfig(StrictModel):
    """``batch_engine:`` block (Feast's key): where materialization and historical retrieval run.

    ``local`` (the default) runs them in this process; ``ray`` splits them into entity-hash tasks on
    a Ray cluster (docs/scaling.md, "The Ray engine"). A bare string is the type.
    """

    type: Literal["local", "ray", "ray.engine"] = Field(
        "local", description="'local' (this process) or 'ray' (Feast's 'ray.engine' is read as 'ray')"
    )
    address: str | None = Field(
        None,
        description="Ray cluster to join: 'auto' (the cluster on this machine), 'ray://host:10001'; "
        "null starts a local Ray in this process",
    )
    num_cpus: int | None = Field(None, gt=0, description="CPUs of the local Ray started when address is null")
    object_store_memory: str | None = Field(
        None, description="object store size of the local Ray started when address is null, e.g. '300MB'"
    )
    max_retries: int = Field(3, ge=0, description="times Ray re-runs a task whose worker died")
    partitions: int | None = Field(
        None, gt=0, description="entity-hash tasks per view (materialization) or per retrieval; default: 2 per CPU"
    )

    @field_validator("object_store_memory")
    @classmethod
    def _store_size(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                parse_size(value)
            except ConfigError as exc:
                raise ConfigError(f"invalid configuration: batch_engine.object_store_memory: {exc}") from None
        return value


class WriteSafetyConfig(StrictModel):
    """``write_safety:`` block: checks on rows callers write (push, write_to_online_store)."""

    max_future_skew_seconds: float | None = Field(
        300,
        ge=0,
        description="rows with event times more than this far past now are refused; 0 or null = no check",
    )


class StreamConfig(StrictModel):
    """``stream:`` block: how ``ladle stream`` consumes Kafka (docs/streaming.md, "Running ladle stream")."""

    group_id: str | None = Field(None, description="consumer group; default 'ladle-{project}'")
    dead_letter_suffix: str = Field(".dlq", min_length=1, description="dead letters of topic T go to T + this suffix")
    max_batch_events: int = Field(10_000, gt=0, description="most messages taken per micro-batch")
    poll_timeout_ms: int = Field(
        50, ge=0, description="how long one poll waits for a first message (it returns as soon as one arrives)"
    )
    offline_flush_seconds: float = Field(
        1.0, gt=0, description="accepted events are appended to the batch source at least this often"
    )
    offline_flush_events: int = Field(50_000, gt=0, description="... or as soon as a partition has this many buffered")
    metrics_port: int = Field(8090, ge=0, le=65535, description="/metrics, /health, /ready; 0 = off")
    kafka: dict[str, str | int | float | bool] = Field(
        default_factory=dict, description="librdkafka settings for the consumer and the producer (SASL, TLS)"
    )


class MonitoringConfig(StrictModel):
    """``monitoring:`` block: drift thresholds, skew tolerance and freshness defaults (docs/monitoring.md)."""

    drift_psi: float | None = Field(0.2, ge=0, description="drift breach when a feature's PSI exceeds this; null = off")
    drift_ks: float | None = Field(
        0.1, ge=0, le=1, description="numeric drift breach when the KS statistic D exceeds this; null = off"
    )
    drift_chi2_p: float | None = Field(
        None, ge=0, le=1, description="categorical drift breach when the chi-square p-value is below this; null = off"
    )
    drift_null_rate: float | None = Field(
        0.05, ge=0, le=1, description="drift breach when the null rate moves by more than this (absolute); null = off"
    )
    drift_out_of_range: float | None = Field(
        0.05, ge=0, le=1, description="drift breach when this share of values is outside the baseline range; null = off"
    )
    drift_min_rows: int = Field(30, ge=1, description="windows with fewer values than this are reported, not judged")
    skew_sample: int = Field(100, gt=0, description="entities a skew audit samples by default")
    skew_rel_tolerance: float = Field(1e-9, ge=0, description="float values within this relative difference match")
    skew_abs_tolerance: float = Field(1e-12, ge=0, description="... or within this absolute difference")
    skew_max_rate: float = Field(
        0.0, ge=0, le=1, description="a skew audit breaches when a feature's mismatch rate exceeds this"
    )
    freshness_slo_seconds: float | None = Field(
        None, gt=0, description="SLO of views without a freshness_slo tag; null = such views are not judged"
    )


class LineageConfig(StrictModel):
    """``lineage:`` block: OpenLineage run events of apply, ingest, materialize, streams, push and retrieval.

    Off unless ``transport`` is set (docs/lineage.md). Emitting never fails the job it describes.
    """

    transport: Literal["http", "file", "console"] | None = Field(
        None, description="where events go: 'http' (url), 'file' (file), 'console' (the log); null = off"
    )
    url: str | None = Field(None, description="http: base URL of the receiver, e.g. http://marquez:5000")
    endpoint: str = Field(
        "api/v1/lineage",
        description="http: path under url (Marquez: api/v1/lineage; DataHub: openapi/openlineage/api/v1/lineage)",
    )
    api_key: str | None = Field(None, description="http: sent as 'Authorization: Bearer <api_key>'")
    timeout_seconds: float = Field(5.0, gt=0, description="http: timeout of one POST")
    file: str | None = Field(None, description="file: JSON-lines file events are appended to (relative to the repo)")
    namespace: str | None = Field(None, description="job namespace; default 'ladle.<project>'")
    running_interval_seconds: float = Field(
        60.0, gt=0, description="ladle stream: seconds between RUNNING events while the stream runs"
    )

    @model_validator(mode="after")
    def _target(self) -> LineageConfig:
        if self.transport == "http" and not self.url:
            raise ValueError("transport 'http' needs url (e.g. http://marquez:5000)")
        if self.transport == "file" and not self.file:
            raise ValueError("transport 'file' needs file (a path events are appended to)")
        return self


class RepoConfig(StrictModel):
    """The whole ``feature_store.yaml``."""

    project: str
    provider: Literal["local", "gcp", "aws"] = "local"
    registry: RegistryConfig = Field(default_factory=RegistryConfig)
    online_store: Any = None
    offline_store: Any = None
    entity_key_serialization_version: Literal[3] = 3
    feature_server: FeatureServerConfig = FeatureServerConfig()
    materialization: MaterializationConfig = MaterializationConfig()
    batch_engine: BatchEngineConfig = BatchEngineConfig()
    write_safety: WriteSafetyConfig = WriteSafetyConfig()
    stream: StreamConfig = StreamConfig()
    monitoring: MonitoringConfig = MonitoringConfig()
    lineage: LineageConfig = LineageConfig()
    auth: dict[str, Any] = Field(default_factory=lambda: {"type": "no_auth"})
    flags: dict[str, Any] | None = None
    coerce_tz_aware: bool = True
    # Feast 0.67 keys for integrations Ladle has not got: accepted so a Feast yaml loads unchanged, not acted on.
    project_description: str = ""
    openlineage: dict[str, Any] | None = None
    mlflow: dict[str, Any] | None = None
    data_quality_monitoring: dict[str, Any] | None = None
    embedding_model: dict[str, Any] | None = None
    data_dir: str | None = Field(
        None, description="raw data the repo's ingestions read; relative to the repo; LADLE_DATA_DIR overrides"
    )
    repo_path: Path = Field(default_factory=Path.cwd, exclude=True)

    @field_validator("project")
    @classmethod
    def _project_name(cls, value: str) -> str:
        if not _PROJECT.match(value):
            raise ValueError("use letters, digits and '_', starting with a letter or digit")
        return value

    @field_validator("auth")
    @classmethod
    def _auth_type(cls, value: dict[str, Any]) -> dict[str, Any]:
        # Only the type here (cheap, for every command); each type's keys are checked by its authenticator.
        kinds = ("no_auth", "api_key", "oidc", "kubernetes")
        if value.get("type", "no_auth") not in kinds:
            raise ValueError(f"type {value.get('type')!r} is not one of {', '.join(kinds)}")
        return value

    @field_validator("batch_engine", mode="before")
    @classmethod
    def _engine_string(cls, value: Any) -> Any:
        return {"type": value} if isinstance(value, str) else value

    @field_validator("registry", mode="before")
    @classmethod
    def _registry_string(cls, value: Any) -> Any:
        return {"path": value} if isinstance(value, str) else value


def expand_env(value: Any, path: str = "") -> Any:
    """Expand ``${VAR}`` / ``${VAR:-default}`` in every string of a parsed yaml tree."""
    if isinstance(value, str):

        def sub(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in os.environ:
                return os.environ[name]
            if default is not None:
                return default
            raise ConfigError(
                f"{path or 'config'}: environment variable {name} is not set (or write ${{{name}:-default}})"
            )

        return _ENV.sub(sub, value)
    if isinstance(value, Mapping):
        return {k: expand_env(v, f"{path}.{k}" if path else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_env(v, f"{path}[{i}]") for i, v in enumerate(value)]
    return value


def _describe(error: Mapping[str, Any], prefix: str = "") -> str:
    loc = ".".join(str(p) for p in (prefix, *error["loc"]) if p != "")
    kind = error["type"]
    if kind == "extra_forbidden":
        return f"{loc}: unknown key (check the spelling; see docs/configuration.md)"
    if kind == "missing":
        return f"{loc}: required key is missing"
    return f"{loc}: {error['msg']} (got {error.get('input')!r})"


def _validate(model: type[StrictModel], raw: Mapping[str, Any], prefix: str = "") -> Any:
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(_describe(e, prefix) for e in exc.errors())
        raise ConfigError(f"invalid configuration: {problems}") from None


_ONLINE_DEFAULT = {"type": "sqlite"}
_OFFLINE_DEFAULT = {"type": "duckdb"}


def _backend_block(group: str, key: str, raw: Any, default: Mapping[str, Any]) -> Any:
    if raw is None:
        raw = dict(default)
    elif isinstance(raw, str):
        raw = {"type": raw}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"invalid configuration: {key}: must be a type name or a mapping with 'type'")
    block = dict(raw)
    type_name = block.get("type", default["type"])
    if not isinstance(type_name, str):
        raise ConfigError(f"invalid configuration: {key}.type: must be a string")
    backend = load_backend(group, type_name)
    config_class: type[StrictModel] = backend.config_class
    # A backend may accept several names (``duckdb``/``file``; ``doris``/``starrocks``/``mysql``):
    # the name given is kept when the block accepts it, so the backend can tell them apart. A
    # ``module.ClassName`` path, or a name the block does not list, becomes the block's default.
    accepted = typing.get_args(config_class.model_fields["type"].annotation)
    if type_name not in accepted:
        block["type"] = getattr(config_class.model_fields["type"], "default", type_name)
    return _validate(config_class, block, key)


def load_config(raw: Mapping[str, Any], repo_path: str | Path = ".") -> RepoConfig:
    """Validate a config mapping (yaml content or dict) into a :class:`RepoConfig`."""
    if not isinstance(raw, Mapping):
        raise ConfigError("invalid configuration: the top level must be a mapping of keys to values")
    data = expand_env(dict(raw))
    data["online_store"] = _backend_block(
        "ladle.online_stores", "online_store", data.get("online_store"), _ONLINE_DEFAULT
    )
    data["offline_store"] = _backend_block(
        "ladle.offline_stores", "offline_store", data.get("offline_store"), _OFFLINE_DEFAULT
    )
    data["repo_path"] = Path(repo_path).resolve()
    config: RepoConfig = _validate(RepoConfig, data)
    return config


def load_yaml(path: str | Path, repo_path: str | Path | None = None) -> RepoConfig:
    """Read and validate a ``feature_store.yaml``."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"no feature_store.yaml at {file} (run 'ladle init' or pass --chdir)")
    try:
        raw = yaml.safe_load(file.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}: not valid YAML{_yaml_problem(exc)}") from None
    return load_config(raw or {}, repo_path if repo_path is not None else file.parent)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    # PyYAML's message spans several lines with a caret drawing; keep the place and the problem.
    mark = getattr(exc, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return (
        f"{where}: {problem}; fix the file there (the keys of one block are indented alike, "
        "and a value containing ': ' or ' #' is quoted)"
    )


def resolve_path(config: RepoConfig, path: str) -> Path:
    """A path from the config or a definition, made absolute against the repo directory."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else config.repo_path / p
