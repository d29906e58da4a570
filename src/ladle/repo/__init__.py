"""Feature repos: loading definitions from ``.py`` files, and plan / apply / teardown against the registry.

>>> from ladle.repo import load_repo
>>> contents = load_repo("feature_repo")
>>> print("\\n".join(store.plan(contents).lines()))
"""

from __future__ import annotations

from ladle.repo.diff import FieldChange, ObjectDiff
from ladle.repo.loader import load_repo
from ladle.repo.plan import ApplyResult, RepoContents, apply, plan, teardown

__all__ = ["ApplyResult", "FieldChange", "ObjectDiff", "RepoContents", "apply", "load_repo", "plan", "teardown"]
