"""Liveness and readiness: readiness asks the registry and the online store, with a time limit."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from ladle.store import FeatureStore

log = logging.getLogger(__name__)
CHECK_TIMEOUT_SECONDS = 3.0


@dataclass(frozen=True)
class Readiness:
    """The outcome of the readiness checks: ``checks`` maps each dependency to "ok" or what is wrong."""

    checks: dict[str, str] = field(default_factory=dict)

    @property
    def ready(self) -> bool:
        """True when every dependency answered."""
        return all(v == "ok" for v in self.checks.values())

    def to_json(self) -> dict[str, object]:
        """The body of ``GET /ready``."""
        return {"status": "ready" if self.ready else "unavailable", "checks": self.checks}


def _run_check(check: Callable[[], object]) -> str:
    try:
        check()
    # A readiness probe reports every failure, whatever its type, instead of crashing.
    except Exception as exc:
        return f"down: {type(exc).__name__}: {exc}"
    return "ok"


async def check_readiness(store: FeatureStore, timeout: float = CHECK_TIMEOUT_SECONDS) -> Readiness:
    """Ask the registry (its version counter) and the online store (``ping``), concurrently, in threads."""
    loop = asyncio.get_running_loop()

    def ping_online_store() -> None:
        # Opening the store (first use) can fail too, so it happens inside the check.
        store.online_store.ping()

    checks: dict[str, Callable[[], object]] = {"registry": store.registry.version, "online_store": ping_online_store}
    futures = {name: loop.run_in_executor(None, _run_check, fn) for name, fn in checks.items()}
    results: dict[str, str] = {}
    for name, future in futures.items():
        try:
            results[name] = await asyncio.wait_for(future, timeout)
        except TimeoutError:
            results[name] = f"down: no answer within {timeout:g} s"
    if not all(v == "ok" for v in results.values()):
        log.warning("not ready: %s", results)
    return Readiness(results)
