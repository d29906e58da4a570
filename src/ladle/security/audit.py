"""The audit log: one JSON line on the logger ``ladle.audit`` per write, materialization, apply and denial.

Lines are logged at INFO, so they appear once that logger (or the root logger) is at INFO and has
a handler: ``ladle --log-level INFO …``, or ``logging.getLogger("ladle.audit")`` given its own
handler (a file, syslog, a JSON log shipper). Fields (docs/security.md):

``time`` (ISO 8601 UTC), ``project``, ``principal`` and ``method`` (how the caller was authenticated),
``event`` (``push``, ``write_to_online_store``, ``materialize``, ``apply``, ``teardown`` or the
refused call), ``actions`` (the :class:`~ladle.definitions.AuthzedAction` names involved),
``resources`` (``kind:name``), ``rows`` (rows written, when known), ``outcome`` (``allowed``,
``denied`` or ``failed``), ``source`` (``sdk``, ``rest``, ``grpc`` or ``cli``) and, for a refusal
or a failure, ``detail``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import TypeVar

import orjson

from ladle.errors import LadleError
from ladle.security.principal import Principal

log = logging.getLogger("ladle.audit")
T = TypeVar("T")


def enabled() -> bool:
    """Whether audit lines go anywhere (callers skip building them otherwise)."""
    return log.isEnabledFor(logging.INFO)


def record(
    event: str,
    principal: Principal,
    actions: Iterable[str],
    resources: Iterable[str],
    *,
    outcome: str,
    source: str,
    project: str = "",
    rows: int | None = None,
    detail: str = "",
) -> None:
    """Log one audit line (nothing is built when the logger is off)."""
    if not log.isEnabledFor(logging.INFO):
        return
    line: dict[str, object] = {
        "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "project": project,
        "principal": principal.name,
        "method": principal.method,
        "event": event,
        "actions": sorted(actions),
        "resources": list(resources),
        "rows": rows,
        "outcome": outcome,
        "source": source,
    }
    if detail:
        line["detail"] = detail
    log.info(orjson.dumps(line).decode())


def audited(
    event: str,
    principal: Principal,
    actions: Iterable[str],
    resources: Callable[[], Iterable[str]],
    work: Callable[[], T],
    *,
    source: str,
    project: str,
    rows: Callable[[T], int | None] = lambda result: result if isinstance(result, int) else None,
) -> T:
    """Run ``work`` and log its line: ``allowed`` with the rows written, or ``failed`` with the error."""
    if not log.isEnabledFor(logging.INFO):
        return work()
    try:
        result = work()
    except LadleError as exc:
        record(event, principal, actions, resources(), outcome="failed", source=source, project=project,
               detail=f"{type(exc).__name__}: {exc}")  # fmt: skip
        raise
    record(event, principal, actions, resources(), outcome="allowed", source=source, project=project,
           rows=rows(result))  # fmt: skip
    return result
