"""Arrows point inward: no import loops, backends below the services, h2grpc on its own.

Imports are read from the source with :mod:`ast`, including those under ``TYPE_CHECKING`` and
inside functions: a loop of type hints or of lazy imports is still a loop in the design.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

import ladle

ROOT = Path(ladle.__file__).parent
#: Backends implement protocols; they must not reach up into the layers that use them.
BACKENDS = ("ladle.online", "ladle.offline", "ladle.registry")
ABOVE_BACKENDS = (
    "ladle.retrieval",
    "ladle.server",
    "ladle.cli",
    "ladle.store",
    "ladle.store_governance",
    "ladle.store_records",
    "ladle.store_writes",
    "ladle.store_core",
)
H2GRPC = "ladle.server.h2grpc"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def modules() -> dict[str, Path]:
    """Every ladle module (generated protobuf stubs aside) → its file."""
    return {_module_name(p): p for p in ROOT.rglob("*.py") if "_proto" not in p.parts}


def _package_of(name: str) -> list[str]:
    """The package a module's relative imports start from."""
    return name.split(".") if modules()[name].name == "__init__.py" else name.split(".")[:-1]


def imported(name: str) -> Iterator[str]:
    """The ladle modules ``name`` imports (a ``from package import name`` counts the submodule if any)."""
    known = modules()
    for node in ast.walk(ast.parse(known[name].read_text())):
        if isinstance(node, ast.ImportFrom):
            base = _package_of(name)
            prefix = base[: len(base) - (node.level - 1)] if node.level else []
            target = ".".join(prefix + ([node.module] if node.module else []))
            candidates = [target, *(f"{target}.{alias.name}" for alias in node.names)]
        elif isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        else:
            continue
        for candidate in candidates:
            found = candidate
            while found and found not in known:
                found = found.rpartition(".")[0]
            if found and found != name:
                yield found


def _is_parent_child(a: str, b: str) -> bool:
    """A package's ``__init__`` re-exporting its children (or a child importing its parent package)."""
    return b.startswith(a + ".") or a.startswith(b + ".")


@cache
def graph() -> dict[str, frozenset[str]]:
    """Module → the ladle modules it imports, parent/child package links left out."""
    return {m: frozenset(d for d in imported(m) if not _is_parent_child(m, d)) for m in modules()}


def cycles(edges: dict[str, frozenset[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def _top_package(name: str) -> str:
    return ".".join(name.split(".")[:2])


def test_the_import_reader_sees_relative_lazy_and_type_checking_imports() -> None:
    store_imports = set(imported("ladle.store"))
    assert "ladle.config" in store_imports  # module level
    assert "ladle.materialize.local" in store_imports  # inside a method
    assert "ladle.retrieval.response" in store_imports  # under TYPE_CHECKING
    assert "ladle.server.h2grpc.frames" in set(imported("ladle.server.h2grpc.connection"))


def test_cycle_finder_finds_a_loop() -> None:
    edges = {"a": frozenset({"b"}), "b": frozenset({"c"}), "c": frozenset({"a"}), "d": frozenset({"a"})}
    assert cycles(edges) == [["a", "b", "c"]]
    assert cycles({"a": frozenset({"b"}), "b": frozenset()}) == []


def test_no_module_imports_itself_in_a_loop() -> None:
    assert cycles(graph()) == []


def test_no_package_imports_itself_in_a_loop() -> None:
    packages: dict[str, set[str]] = {}
    for module, deps in graph().items():
        packages.setdefault(_top_package(module), set()).update(
            _top_package(d) for d in deps if _top_package(d) != _top_package(module)
        )
    assert cycles({p: frozenset(d) for p, d in packages.items()}) == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_backends_do_not_import_the_layers_above_them(backend: str) -> None:
    wrong = sorted(
        f"{module} imports {dep}"
        for module, deps in graph().items()
        if module == backend or module.startswith(backend + ".")
        for dep in deps
        if any(dep == up or dep.startswith(up + ".") for up in ABOVE_BACKENDS)
    )
    assert wrong == []


def test_h2grpc_imports_nothing_of_ladle_outside_itself() -> None:
    inside = [m for m in modules() if m == H2GRPC or m.startswith(H2GRPC + ".")]
    assert len(inside) > 3
    wrong = sorted(
        f"{module} imports {dep}"
        for module in inside
        for dep in imported(module)
        if not (dep == H2GRPC or dep.startswith(H2GRPC + "."))
    )
    assert wrong == []


#: Pure layers: the vocabulary and third-party libraries only (no backend, service or I/O of Ladle's).
PURE = {"ladle.aggregation": ("ladle.definitions", "ladle.errors", "ladle.types", "ladle.times")}


@pytest.mark.parametrize("layer", sorted(PURE))
def test_pure_layers_import_only_the_vocabulary(layer: str) -> None:
    allowed = PURE[layer]
    inside = [m for m in modules() if m == layer or m.startswith(layer + ".")]
    assert inside
    wrong = sorted(
        f"{module} imports {dep}"
        for module in inside
        for dep in imported(module)
        if not (
            dep == layer or dep.startswith(layer + ".") or any(dep == a or dep.startswith(a + ".") for a in allowed)
        )
    )
    assert wrong == []
