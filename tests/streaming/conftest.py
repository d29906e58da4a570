"""The real Kafka-protocol broker (Tansu, via LocalBroker) for the stream runtime tests.

One broker serves the whole session; each test uses its own topics and consumer group. Outside CI
a missing broker binary skips these tests loudly; under CI=true it fails them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def require_broker() -> None:
    """Skip (loudly) or, under CI=true, fail when the Tansu binary is not installed."""
    from ladle.errors import MissingExtraError
    from ladle.streaming.broker import tansu_binary

    try:
        tansu_binary()
    except MissingExtraError as exc:
        reason = f"SERVICE DOWN: the local Kafka broker cannot start: {exc}"
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)


@pytest.fixture(scope="session")
def kafka() -> Iterator[str]:
    """``host:port`` of a Tansu broker started for this test session."""
    require_broker()
    from ladle.streaming.broker import LocalBroker

    with LocalBroker() as broker:
        yield broker.bootstrap_servers
