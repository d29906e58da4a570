"""``TransformUdf``: an on-demand view's function as the registry keeps it (source text + its file's imports).

A function read back from the registry is compiled from that text on first use (see
docs/on-demand.md for the trust model: applying or serving a repo runs its code, as in Feast).
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import textwrap
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ladle.errors import DefinitionError


@dataclass(frozen=True)
class TransformUdf:
    """An ODFV's function as the registry keeps it: its source (decorators removed), the imports of
    its file, and their SHA-256. ``fn`` is the live function when there is one."""

    name: str
    source: str
    imports: str
    sha256: str
    fn: Callable[..., Any] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_function(cls, what: str, fn: object) -> TransformUdf:
        """Capture a function defined in a file (a lambda or a REPL function cannot be versioned)."""
        if not inspect.isfunction(fn):
            raise DefinitionError(f"{what}: the transformation must be a Python function, got {fn!r}")
        if fn.__name__ == "<lambda>":
            raise DefinitionError(f"{what}: the transformation must be a named function (def), not a lambda")
        try:
            text = textwrap.dedent(inspect.getsource(fn))
            file = inspect.getsourcefile(fn)
            module_text = open(file, encoding="utf-8").read() if file else ""  # noqa: SIM115
        except (OSError, TypeError):
            raise DefinitionError(
                f"{what}: the source of {fn.__qualname__} cannot be read; define it in a file"
            ) from None
        source = _undecorated(what, text)
        imports = _imports_of(module_text)
        return cls(fn.__name__, source, imports, _sha(imports + "\n" + source), fn)

    def load(self) -> Callable[..., Any]:
        """The live function, or the stored source compiled with its file's imports."""
        if self.fn is not None:
            return self.fn
        namespace: dict[str, Any] = {"__name__": f"ladle_odfv_{self.name}"}
        # The file's imports one by one: one this process cannot import (a repo written with
        # `from feast import ...` served where only Ladle is installed) is skipped; the function
        # only fails, with a NameError the apply dry run reports, if its body needs that name.
        for line in self.imports.splitlines():
            try:
                exec(compile(line, f"<odfv {self.name} imports>", "exec"), namespace)
            except ImportError:
                continue
            except Exception as exc:  # an import's module raised: report which one
                raise DefinitionError(f"on-demand function {self.name}: '{line}' failed: {exc}") from exc
        try:
            exec(compile(self.source, f"<odfv {self.name}>", "exec"), namespace)
        except Exception as exc:  # user code: report which function, not a traceback
            raise DefinitionError(
                f"on-demand function {self.name} cannot be loaded: {type(exc).__name__}: {exc}"
            ) from exc
        fn: Callable[..., Any] | None = namespace.get(self.name)
        if not callable(fn):
            raise DefinitionError(f"on-demand function {self.name} is not defined by its stored source")
        object.__setattr__(self, "fn", fn)
        return fn

    def to_spec(self) -> dict[str, Any]:
        """JSON-ready spec."""
        return {"name": self.name, "source": self.source, "imports": self.imports, "sha256": self.sha256}

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> TransformUdf:
        """Rebuild from :meth:`to_spec` output (not compiled until :meth:`load`)."""
        return cls(spec["name"], spec["source"], spec.get("imports", ""), spec["sha256"])


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _undecorated(what: str, text: str) -> str:
    try:
        tree = ast.parse(text)
    except SyntaxError:
        raise DefinitionError(f"{what}: the transformation's source does not parse on its own") from None
    defs = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
    if len(defs) != 1:
        raise DefinitionError(f"{what}: the transformation must be a plain 'def' function")
    defs[0].decorator_list = []
    return ast.unparse(defs[0]) + "\n"


def _imports_of(module_text: str) -> str:
    """The module-level import statements of a file (what the function's body may refer to)."""
    try:
        tree = ast.parse(module_text)
    except SyntaxError:
        return ""
    nodes: list[ast.stmt] = [
        n
        for n in tree.body
        if isinstance(n, ast.Import) or (isinstance(n, ast.ImportFrom) and n.level == 0 and n.module != "__future__")
    ]
    return "".join(ast.unparse(n) + "\n" for n in nodes)
