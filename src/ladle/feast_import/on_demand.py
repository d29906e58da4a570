"""Feast on-demand feature views → Ladle's, from the function's source text Feast keeps.

Feast stores an ODFV's function twice: pickled (``body``, dill) and as text (``body_text``: the
decorated ``def`` as written). Ladle keeps functions as source text (:class:`TransformUdf`), so the
text is what is imported; the pickle is never loaded. The text carries no imports: the names its
body uses from outside are resolved from a short list of the modules ODFV bodies use by convention
(``pd``, ``np``, standard modules); a function that needs any other outside name is reported, not
imported, naming it (declare that view in the Ladle repo instead).
"""

from __future__ import annotations

import ast
import builtins
import hashlib
from collections.abc import Mapping
from typing import Any

from ladle import definitions as lad
from ladle.definitions.on_demand import OnDemandFeatureView, ViewInput
from ladle.definitions.transform_udf import TransformUdf
from ladle.errors import DefinitionError
from ladle.feast_import.mapping import DUMMY_ENTITY, Unmapped, field_from_proto, source_from_proto

KIND = "on-demand feature view"
#: Outside names an imported function may use, and the import that provides each.
KNOWN_IMPORTS: dict[str, str] = {
    "pd": "import pandas as pd",
    "pandas": "import pandas",
    "np": "import numpy as np",
    "numpy": "import numpy",
    "pa": "import pyarrow as pa",
    "math": "import math",
    "json": "import json",
    "re": "import re",
    "datetime": "import datetime",
    "timedelta": "from datetime import timedelta",
    "Any": "from typing import Any",
}


def _function(name: str, text: str) -> ast.FunctionDef:
    try:
        tree = ast.parse(text)
    except SyntaxError as exc:
        raise Unmapped(KIND, name, f"its stored function text does not parse: {exc.msg}") from None
    defs = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
    if len(defs) != 1:
        raise Unmapped(KIND, name, "its stored function text is not one 'def'")
    return defs[0]


def _free_names(fn: ast.FunctionDef) -> set[str]:
    """Names the function reads that it neither binds nor gets from builtins (decorators left out)."""
    bound = {a.arg for a in (*fn.args.posonlyargs, *fn.args.args, *fn.args.kwonlyargs)}
    bound |= {a.arg for a in (fn.args.vararg, fn.args.kwarg) if a is not None}
    read: set[str] = set()
    for node in ast.walk(ast.Module(body=[*fn.body], type_ignores=[])):
        if isinstance(node, ast.Name):
            (read if isinstance(node.ctx, ast.Load) else bound).add(node.id)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            bound.add(node.name)
        elif isinstance(node, ast.alias):
            bound.add((node.asname or node.name).split(".")[0])
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
    annotations = [a.annotation for a in (*fn.args.args, *fn.args.kwonlyargs) if a.annotation is not None]
    for node in [*annotations, *([fn.returns] if fn.returns is not None else [])]:
        read |= {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
    return read - bound - set(dir(builtins))


def udf_from_text(name: str, text: str) -> TransformUdf:
    """A :class:`TransformUdf` from Feast's ``body_text`` (decorators dropped, imports resolved)."""
    fn = _function(name, text)
    fn.decorator_list = []
    unknown = sorted(n for n in _free_names(fn) if n not in KNOWN_IMPORTS)
    if unknown:
        raise Unmapped(KIND, name, f"its function uses {unknown}, which its stored text does not define")
    imports = "".join(KNOWN_IMPORTS[n] + "\n" for n in sorted(_free_names(fn)))
    source = ast.unparse(fn) + "\n"
    return TransformUdf(fn.name, source, imports, hashlib.sha256((imports + "\n" + source).encode()).hexdigest())


def _source(name: str, key: str, item: Any, views: Mapping[str, lad.FeatureView]) -> Any:
    which = item.WhichOneof("source")
    if which == "request_data_source":
        try:
            return source_from_proto(item.request_data_source)
        except Unmapped as exc:
            raise Unmapped(KIND, name, f"its request source {exc.reason}") from None
    projection = item.feature_view_projection if which == "feature_view_projection" else None
    view_name = projection.feature_view_name if projection is not None else item.feature_view.spec.name
    if view_name not in views:
        raise Unmapped(KIND, name, f"reads '{view_name or key}', which was not imported")
    features = tuple(c.name for c in projection.feature_columns) if projection is not None else ()
    alias = (projection.feature_view_name_alias or None) if projection is not None else None
    return ViewInput(view_name, features or tuple(views[view_name].feature_names), alias)


def on_demand_from_proto(message: Any, views: Mapping[str, lad.FeatureView]) -> OnDemandFeatureView:
    """A Feast ``OnDemandFeatureView`` (its view sources must be among ``views``)."""
    spec = message.spec
    name = spec.name
    if spec.aggregations:
        raise Unmapped(KIND, name, "it has aggregations (Ladle's on-demand views transform, they do not aggregate)")
    if spec.version not in ("", "latest"):
        raise Unmapped(KIND, name, f"version {spec.version!r} (Ladle keeps one live version per view)")
    if [e for e in spec.entities if e != DUMMY_ENTITY]:
        raise Unmapped(KIND, name, f"it declares entities {list(spec.entities)} (Ladle's take them from its sources)")
    transformation = spec.feature_transformation
    if transformation.substrait_transformation:
        raise Unmapped(KIND, name, "its transformation is a Substrait plan (Ladle runs Python functions)")
    udf_v2 = transformation.user_defined_function
    text = udf_v2.body_text or spec.user_defined_function.body_text
    if not text:
        raise Unmapped(KIND, name, "Feast stored no text of its function (only the pickle, which is never loaded)")
    mode = spec.mode or udf_v2.mode or "pandas"
    sources = [_source(name, entry.key, entry.value, views) for entry in spec.sources]
    try:
        return OnDemandFeatureView(
            name=name,
            schema=[field_from_proto(KIND, name, f) for f in spec.features],
            sources=sources,
            udf=udf_from_text(name, text),
            mode=mode,  # type: ignore[arg-type]  # checked by OnDemandFeatureView
            description=spec.description,
            tags=dict(sorted(spec.tags.items())),
            owner=spec.owner,
            write_to_online_store=spec.write_to_online_store,
            singleton=spec.singleton,
        )
    except DefinitionError as exc:
        raise Unmapped(KIND, name, str(exc)) from None
