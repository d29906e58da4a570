"""The gRPC abuse limits as server settings: each reaches the built-in engine's Limits as configured."""

from __future__ import annotations

import resource

import pytest

from ladle.errors import ConfigError
from ladle.server.grpc_h2 import limits_of
from ladle.server.settings import GRPC_LIMITS, ServerSettings, setting_infos

CONFIGURED = {
    "grpc_max_streams_per_connection": ("max_concurrent_streams", 7),
    "grpc_max_connections": ("max_connections", 9),
    "grpc_connection_buffer_bytes": ("max_buffered_bytes", 50 << 20),
    "grpc_worker_buffer_bytes": ("max_worker_buffered_bytes", 70 << 20),
    "grpc_max_control_frames_per_second": ("control_frames_per_second", 11),
    "grpc_max_resets_per_second": ("resets_per_second", 13),
    "grpc_max_continuation_frames": ("max_continuation_frames", 3),
    "grpc_handshake_timeout": ("handshake_timeout", 1.5),
    "grpc_idle_timeout": ("idle_timeout", 2.5),
    "grpc_stall_timeout": ("stall_timeout", 3.5),
}


def test_every_limit_setting_is_covered() -> None:
    assert set(CONFIGURED) == set(GRPC_LIMITS)
    names = {info.name for info in setting_infos()}
    assert set(GRPC_LIMITS) <= names  # so each has a flag, an env var and a docs row


@pytest.mark.parametrize("name", sorted(CONFIGURED))
def test_each_setting_reaches_the_engine_exactly(name: str) -> None:
    field, value = CONFIGURED[name]
    limits = limits_of(ServerSettings(**{name: value}))
    assert getattr(limits, field) == value


@pytest.mark.parametrize("name", sorted(CONFIGURED))
def test_non_positive_limits_are_refused(name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        ServerSettings(**{name: 0})


def test_connection_buffer_holds_at_least_one_message() -> None:
    limits = limits_of(ServerSettings(grpc_connection_buffer_bytes=1000, max_body_bytes=100_000))
    assert limits.max_buffered_bytes == 100_000 + (64 << 10)
    assert limits.max_message_bytes == 100_000


def test_connections_are_capped_at_half_the_descriptor_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
        assert limits_of(ServerSettings(grpc_max_connections=1000)).max_connections == 128
        assert limits_of(ServerSettings(grpc_max_connections=100)).max_connections == 100
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
