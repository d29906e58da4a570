"""``batch_engine:`` in feature_store.yaml: Feast's spellings, defaults and clear errors."""

from __future__ import annotations

import pytest

from ladle.config import load_config
from ladle.errors import ConfigError


def test_default_is_the_local_engine() -> None:
    assert load_config({"project": "p"}).batch_engine.type == "local"


@pytest.mark.parametrize("raw", ["ray", {"type": "ray"}, {"type": "ray.engine"}])
def test_ray_spellings(raw: object) -> None:
    engine = load_config({"project": "p", "batch_engine": raw}).batch_engine
    assert engine.type in ("ray", "ray.engine")
    assert engine.max_retries == 3 and engine.address is None and engine.partitions is None


def test_settings_are_read() -> None:
    engine = load_config(
        {
            "project": "p",
            "batch_engine": {"type": "ray", "address": "ray://head:10001", "num_cpus": 4,
                             "object_store_memory": "300MB", "max_retries": 1, "partitions": 8},
        }
    ).batch_engine  # fmt: skip
    assert (engine.address, engine.num_cpus, engine.max_retries, engine.partitions) == ("ray://head:10001", 4, 1, 8)


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ({"type": "spark"}, "batch_engine.type"),
        ({"type": "ray", "workers": 3}, "unknown key"),
        ({"type": "ray", "partitions": 0}, "batch_engine.partitions"),
        ({"type": "ray", "object_store_memory": "lots"}, "object_store_memory"),
    ],
)
def test_bad_settings_are_one_config_error_line(raw: object, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config({"project": "p", "batch_engine": raw})
    assert words in str(info.value)
    assert "\n" not in str(info.value)
