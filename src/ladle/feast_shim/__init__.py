"""Feast's import names for feature repos: ``from feast import Entity, FeatureView`` runs on Ladle.

:func:`feast_names` is a context manager the repo loader enters while it executes a repo's files.
Inside it, ``import feast`` and the module paths Feast repos use (``feast.types``,
``feast.data_format``, ``feast.infra.offline_stores.file_source`` …, listed in
:data:`ladle.feast_shim.modules.MODULES`) resolve to Ladle's definitions with Feast's signatures.
On exit every ``feast`` module the process had before (the real Feast, when it is installed and
was imported) is put back, and the stand-ins are dropped: code outside the loader keeps getting
the real Feast.

>>> from ladle.feast_shim import feast_names
>>> with feast_names():
...     from feast import Entity
"""

from __future__ import annotations

from ladle.feast_shim.finder import feast_names

__all__ = ["feast_names"]
