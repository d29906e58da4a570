"""One error tree for everything Ladle raises on purpose.

::

    LadleError
    ├── ConfigError                      feature_store.yaml / config dict is wrong (key path + hint)
    │   └── DataDirError                 the repo's raw-data directory (data_dir / LADLE_DATA_DIR) is missing
    ├── DefinitionError                  an Entity, Field, source, view or service is invalid
    ├── RepoError                        a feature repo cannot be loaded (import error, duplicate names)
    ├── RegistryError
    │   ├── ObjectNotFoundError
    │   │   ├── EntityNotFoundError
    │   │   ├── DataSourceNotFoundError
    │   │   │   └── PushSourceNotFoundError
    │   │   ├── FeatureViewNotFoundError
    │   │   ├── FeatureServiceNotFoundError
    │   │   ├── FeatureNotFoundError     a view exists but has no such feature
    │   │   ├── PermissionNotFoundError  no permission object by that name
    │   │   ├── VersionNotFoundError     a pinned version (``view@v3``) was never stored
    │   │   └── ScheduleNotFoundError    no schedule by that name is declared in the repo
    │   ├── ConflictError                optimistic-concurrency loss on apply; retry after refresh
    │   ├── PinConflictError             an apply would break a pinned consumer (``--force`` overrides)
    │   └── LeaseHeldError               a scheduled run already holds the lease
    ├── SecurityError
    │   ├── AuthenticationError          no credential, or a wrong / expired one (401 / UNAUTHENTICATED)
    │   └── PermissionDeniedError        the caller lacks the action on a resource (403 / PERMISSION_DENIED)
    ├── RequestError                     a caller's request is malformed (maps to 4xx / INVALID_ARGUMENT)
    │   ├── InvalidFeatureReferenceError
    │   ├── FeatureNameCollisionError
    │   ├── EntityKeyError               missing join key, wrong key dtype
    │   │   └── RequestDataNotFoundError a request field an on-demand view needs is not in the entity rows
    │   ├── SchemaMismatchError          pushed / written columns or types do not match the view
    │   ├── FutureEventTimeError         rows with event times beyond the allowed skew into the future
    │   └── RequestTooLargeError
    ├── UnsupportedFeatureError          a Feast feature Ladle refuses on purpose (the message says why)
    ├── ValidationFailed                 a frame does not match a validation reference (``.report`` says how)
    ├── DataSourceError                  a source file is missing, unreadable or has the wrong schema
    ├── MaterializationError
    │   └── MaterializationInProgressError
    └── BackendError                     a store could not do its job
        ├── BackendUnavailableError      connection refused / timed out (message names the address)
        └── MissingExtraError            the backend's driver is not installed (names the extra)

Driver exceptions are translated at the backend boundary with ``raise ... from exc``.
HTTP and gRPC status codes are chosen by the server, not here.
"""

from __future__ import annotations


class LadleError(Exception):
    """Base class of every error Ladle raises on purpose."""


class ConfigError(LadleError):
    """The configuration is invalid; the message names the key path and gives a hint."""


class DataDirError(ConfigError):
    """The raw-data directory a repo's ingestions read is not set or does not exist (names the setting)."""


class DefinitionError(LadleError):
    """A definition (entity, field, source, feature view, feature service) is invalid."""


class RepoError(LadleError):
    """A feature repository cannot be loaded."""


class RegistryError(LadleError):
    """The registry refused or failed an operation."""


class ObjectNotFoundError(RegistryError):
    """A named object does not exist in the project's registry."""

    kind = "object"

    def __init__(self, name: str, project: str | None = None, *, detail: str = "") -> None:
        self.name = name
        self.project = project
        where = f" in project '{project}'" if project else ""
        msg = f"{self.kind} '{name}' does not exist{where}"
        super().__init__(f"{msg}. {detail}".strip() if detail else msg)


class EntityNotFoundError(ObjectNotFoundError):
    """No entity by that name."""

    kind = "entity"


class DataSourceNotFoundError(ObjectNotFoundError):
    """No data source by that name."""

    kind = "data source"


class PushSourceNotFoundError(DataSourceNotFoundError):
    """No push source by that name."""

    kind = "push source"


class FeatureViewNotFoundError(ObjectNotFoundError):
    """No feature view by that name."""

    kind = "feature view"


class FeatureServiceNotFoundError(ObjectNotFoundError):
    """No feature service by that name."""

    kind = "feature service"


class FeatureNotFoundError(ObjectNotFoundError):
    """The feature view exists but does not have the requested feature."""

    kind = "feature"


class PermissionNotFoundError(ObjectNotFoundError):
    """No permission object by that name."""

    kind = "permission"


class VersionNotFoundError(ObjectNotFoundError):
    """A pinned definition version (``view@v3``, ``service@v2``) is not in the registry's history."""

    kind = "version"


class ScheduleNotFoundError(ObjectNotFoundError):
    """No schedule by that name is declared in the feature repo."""

    kind = "schedule"


class ConflictError(RegistryError):
    """Someone else changed the registry since this writer read it; nothing was applied."""


class PinConflictError(RegistryError):
    """An apply would break a consumer pinned to an older version; nothing was applied.

    ``conflicts`` holds one readable line per broken pin; ``ladle apply --force`` applies anyway.
    """

    def __init__(self, conflicts: list[str]) -> None:
        self.conflicts = list(conflicts)
        super().__init__(
            "the change breaks pinned consumers: " + "; ".join(conflicts) + " (apply with --force / force=True to "
            "apply anyway)"
        )


class LeaseHeldError(RegistryError):
    """A lease (e.g. for a scheduled run) is held by another owner."""


class SecurityError(LadleError):
    """Authentication or authorization refused a call; nothing was read or written."""


class AuthenticationError(SecurityError):
    """The caller gave no credential, or one that is wrong, expired or not for this server."""


class PermissionDeniedError(SecurityError):
    """The authenticated caller lacks ``action`` on ``resource``; the message names both."""

    def __init__(self, message: str, *, action: str = "", resource: str = "") -> None:
        super().__init__(message)
        self.action = action
        self.resource = resource


class RequestError(LadleError):
    """A request is malformed; nothing was read or written."""


class InvalidFeatureReferenceError(RequestError):
    """A feature reference is not of the form ``view:feature`` (or a bare view name)."""


class FeatureNameCollisionError(RequestError):
    """Two requested features share an output name; use ``full_feature_names=True``."""


class EntityKeyError(RequestError):
    """A join key is missing, has the wrong type, or entity columns have different lengths."""


class RequestDataNotFoundError(EntityKeyError):
    """An on-demand feature view needs a request field the entity rows (or entity frame) lack."""


class SchemaMismatchError(RequestError):
    """Rows pushed or written do not match the feature view's schema."""


class FutureEventTimeError(RequestError):
    """Rows carry event times further into the future than the configured skew allows (names the limit)."""


class RequestTooLargeError(RequestError):
    """The request exceeds a configured limit (entities per request, body size)."""


class UnsupportedFeatureError(LadleError):
    """A Feast feature Ladle does not offer (the message says why and what to use instead)."""


class ValidationFailed(LadleError):
    """A frame failed validation against a saved reference; ``report`` is the
    :class:`~ladle.offline.validation.ValidationReport`."""

    def __init__(self, report: object) -> None:
        super().__init__(str(report))
        self.report = report


class DataSourceError(LadleError):
    """A data source cannot be read: missing file, unreadable, or wrong schema."""


class MaterializationError(LadleError):
    """Materialization failed; the watermark was not advanced."""


class MaterializationInProgressError(MaterializationError):
    """The feature view is already being materialized by another run."""


class BackendError(LadleError):
    """A storage backend failed."""


class BackendUnavailableError(BackendError):
    """The backend could not be reached (connection refused, timeout); names the address."""


class MissingExtraError(BackendError):
    """The backend's driver is not installed; the message names the extra to install."""

    def __init__(self, backend: str, extra: str, module: str) -> None:
        super().__init__(f"the {backend} backend needs the Python package '{module}': pip install 'ladle[{extra}]'")
        self.backend = backend
        self.extra = extra
