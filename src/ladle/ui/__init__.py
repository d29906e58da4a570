"""The web UI: read-only pages over the registry, job history and monitoring reports.

Modules:

* :mod:`.app`: the ASGI app (HTML shell, packaged assets, the JSON API under ``/ui/api/``), served
  by the feature server under ``/ui`` or alone by ``ladle ui``.
* :mod:`.catalog`: objects, features, search, paging, versions and diffs.
* :mod:`.lineage`: the source → job → view → service graph.
* :mod:`.activity`: materialization, schedule and stream job history, freshness, drift and skew reports.
* ``static/``: the page's own ES modules and CSS (no CDN, no build step).

See docs/ui.md.
"""

from __future__ import annotations

from ladle.ui.app import UiApp

__all__ = ["UiApp"]
