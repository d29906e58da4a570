"""Stream feature views read from the registry, given their transform functions from the repo.

The registry keeps each udf/derive as source text and a hash (``Udf``), never as code. A process
that runs a view (historical retrieval, materialization, ``ladle stream``) takes the functions
from the feature repo's Python files and refuses to run when their source differs from the
registry's: the registry is what was reviewed and applied.

>>> views = bind_views(snapshot.feature_views.values(), store.repo_path)
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from ladle.definitions import FeatureView, StreamFeatureView
from ladle.errors import DefinitionError
from ladle.repo.loader import collect_declared


def needs_binding(view: FeatureView) -> bool:
    """True for a stream feature view with a transform whose function is not loaded."""
    if not isinstance(view, StreamFeatureView):
        return False
    return any(fn is not None and fn.fn is None for fn in (view.udf, view.derive))


def bind_views(views: Iterable[FeatureView], repo_path: str | Path) -> list[FeatureView]:
    """``views`` with every unbound transform bound from the repo at ``repo_path``.

    The repo's files are imported only when some view needs it, and once for all of them.
    Raises :class:`DefinitionError` when the repo does not declare a view that needs binding, or
    declares it with a different udf/derive source (run ``ladle apply``).
    """
    views = list(views)
    if not any(needs_binding(v) for v in views):
        return views
    declared = {v.name: v for v in collect_declared(repo_path, StreamFeatureView, "stream feature views")}
    return [_bind(v, declared) if needs_binding(v) else v for v in views]


def bind_view(view: FeatureView, repo_path: str | Path) -> FeatureView:
    """One view bound from the repo at ``repo_path`` (see :func:`bind_views`)."""
    return bind_views([view], repo_path)[0]


def _bind(view: FeatureView, declared: dict[str, StreamFeatureView]) -> FeatureView:
    assert isinstance(view, StreamFeatureView)
    repo_view = declared.get(view.name)
    if repo_view is None:
        raise DefinitionError(
            f"stream feature view '{view.name}' has transforms, but the feature repo does not declare it; "
            "run from the repo directory (or pass repo_path) or run 'ladle apply'"
        )
    return view.bind(repo_view)
