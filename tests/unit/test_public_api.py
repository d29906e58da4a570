"""The public API is exported once, sorted, and documented."""

from __future__ import annotations

import inspect

import ladle


def test_all_is_sorted_and_complete() -> None:
    assert list(ladle.__all__) == sorted(ladle.__all__)
    for name in ladle.__all__:
        assert hasattr(ladle, name), name
    public = {n for n, v in vars(ladle).items() if not n.startswith("_") and not inspect.ismodule(v)}
    assert public <= set(ladle.__all__) | {"annotations"}, public - set(ladle.__all__)


def test_public_objects_have_docstrings() -> None:
    for name in ladle.__all__:
        obj = getattr(ladle, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert inspect.getdoc(obj), f"ladle.{name} has no docstring"
