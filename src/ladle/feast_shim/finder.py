"""The ``sys.meta_path`` finder behind :func:`ladle.feast_shim.feast_names`.

While active, the finder sits first on ``sys.meta_path`` and answers for ``feast`` and every
``feast.*`` name, so the real Feast (if installed) is never half-mixed in: a provided module gets
Ladle's stand-in, an intermediate package an empty package, and anything else a
``ModuleNotFoundError`` that says Ladle does not provide it. ``sys.modules`` entries for ``feast``
are saved on entry and restored on exit. The repo loader holds its own lock around this, so one
load runs at a time; another thread importing ``feast`` during a load would see the stand-ins.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import ModuleType
from typing import Any

from ladle.feast_shim import definitions as fd
from ladle.feast_shim import modules as table

_MARK = "__ladle_feast_shim__"


def _is_feast(name: str) -> bool:
    return name == "feast" or name.startswith("feast.")


def _resolve(feast_module: str, attr: str, value: object) -> object:
    if not isinstance(value, str):
        return value
    module_name, _, name = value.partition(":")
    try:
        return getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError):
        raise fd.unsupported(f"{feast_module}.{attr}", f"this Ladle build has no {module_name}.{name}") from None


def _module_getattr(feast_module: str, names: dict[str, object]) -> Any:
    def __getattr__(attr: str) -> object:
        if attr in names:
            return _resolve(feast_module, attr, names[attr])
        if attr.startswith("__"):
            raise AttributeError(attr)
        if feast_module == "feast" and attr in table.REFUSED:
            return fd.refused_class(attr, table.REFUSED[attr])
        if feast_module == "feast.types" and attr in table.REFUSED_TYPES:
            raise fd.unsupported(f"feast.types.{attr}", "Ladle has no column type for it")
        # Not AttributeError: ``from feast import X`` would turn it into a message without the reason.
        raise fd.unsupported(
            f"{feast_module}.{attr}", "it is not in Ladle's Feast compatibility (docs/feast-compat.md)"
        )

    return __getattr__


class _Loader(importlib.abc.Loader):
    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return None

    def exec_module(self, module: ModuleType) -> None:
        name = module.__name__
        setattr(module, _MARK, True)
        module.__doc__ = f"Ladle's stand-in for {name} (active while a feature repo loads)."
        names = table.MODULES.get(name, {})
        for attr, value in names.items():
            if not isinstance(value, str):
                setattr(module, attr, value)
        module.__getattr__ = _module_getattr(name, names)  # type: ignore[method-assign]


class _Finder(importlib.abc.MetaPathFinder):
    def __init__(self) -> None:
        self._packages = table.packages()
        self._loader = _Loader()

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if not _is_feast(fullname):
            return None
        is_package = fullname in self._packages
        if fullname not in table.MODULES and not is_package:
            raise ModuleNotFoundError(
                f"Ladle's Feast compatibility provides no module {fullname} (see docs/feast-compat.md)",
                name=fullname,
            )
        spec = importlib.machinery.ModuleSpec(fullname, self._loader, is_package=is_package)
        if is_package:
            spec.submodule_search_locations = []
        return spec


@contextmanager
def feast_names() -> Iterator[None]:
    """Make ``import feast`` give Ladle's stand-ins inside the block; restore everything after."""
    saved = {n: m for n, m in sys.modules.items() if _is_feast(n)}
    for name in saved:
        del sys.modules[name]
    finder = _Finder()
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        if finder in sys.meta_path:
            sys.meta_path.remove(finder)
        for name in [n for n in sys.modules if _is_feast(n)]:
            del sys.modules[name]
        sys.modules.update(saved)
