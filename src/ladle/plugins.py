"""Backend discovery through entry points (built-ins go through the same path).

Groups: ``ladle.online_stores``, ``ladle.offline_stores``. A ``type`` that contains a dot is taken as
``module.ClassName`` (Feast's custom-store convention) and imported directly.
"""

from __future__ import annotations

import importlib
from functools import cache
from importlib.metadata import entry_points
from typing import Any

from ladle.errors import ConfigError, MissingExtraError

#: Which extra provides each built-in backend's driver, for the error message.
_EXTRAS = {
    "redis": "redis",
    "psycopg": "postgres",
    "grpc": "server",
    "pyiceberg": "iceberg",
    "pymysql": "doris",
    "sqlglot": "doris",
    "httpx": "remote",
}


@cache
def available(group: str) -> dict[str, str]:
    """Backend type name → ``module:attr`` for every installed backend of ``group``."""
    return {ep.name: ep.value for ep in entry_points(group=group)}


def load_backend(group: str, type_name: str) -> Any:
    """Import and return the backend class registered as ``type_name`` in ``group``."""
    if "." in type_name and ":" not in type_name:
        module_name, _, attr = type_name.rpartition(".")
        target = f"{module_name}:{attr}"
    else:
        known = available(group)
        if type_name not in known:
            kind = group.rsplit(".", maxsplit=1)[-1].rstrip("s").replace("_", " ")
            raise ConfigError(
                f"unknown {kind} type '{type_name}'; installed: {', '.join(sorted(known)) or 'none'} "
                "(or give a 'module.ClassName' path)"
            )
        target = known[type_name]
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").split(".")[0]
        if missing in _EXTRAS:
            raise MissingExtraError(type_name, _EXTRAS[missing], missing) from exc
        raise ConfigError(f"cannot import backend '{type_name}' from {module_name}: {exc}") from exc
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ConfigError(f"backend '{type_name}': {module_name} has no attribute {attr}") from None
