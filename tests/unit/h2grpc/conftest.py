"""Fixtures of the h2grpc tests: a loop thread per loop kind, the test server, grpcio channels."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import grpc
import pytest

from ladle.server.h2grpc import Limits

from .support import LoopThread, Served, State


@pytest.fixture(scope="module", params=["asyncio", "uvloop"])
def loop_thread(request: pytest.FixtureRequest) -> Iterator[LoopThread]:
    """Every test on both loops: ``ladle serve`` workers run on uvloop, whose transports differ from asyncio's."""
    loop = LoopThread(request.param)
    yield loop
    loop.close()


@pytest.fixture(scope="module")
def state(loop_thread: LoopThread) -> State:
    """Probes and gates, fresh for each loop kind (so a probe set on one loop proves nothing on the other)."""
    return State()


@pytest.fixture(scope="module")
def served(loop_thread: LoopThread, state: State) -> Iterator[Served]:
    served = Served.start(loop_thread, state)
    yield served
    served.stop(1)


@pytest.fixture
def make_server(loop_thread: LoopThread, state: State) -> Iterator[Callable[..., Served]]:
    """Servers of one test (with their own limits); stopped at the end if the test did not."""
    started: list[Served] = []

    def make(limits: Limits | None = None) -> Served:
        started.append(Served.start(loop_thread, state, limits))
        return started[-1]

    yield make
    for s in started:
        s.stop(0.5)


@pytest.fixture
def channel(served: Served) -> Iterator[grpc.Channel]:
    """A fresh grpcio channel (so one connection) per test."""
    with grpc.insecure_channel(f"127.0.0.1:{served.port}") as ch:
        yield ch
