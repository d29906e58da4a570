"""Web UI page loads: each page's HTML, assets and API calls, over HTTP and (when Chromium is there) in a browser.

The commodity repo (``feature_repo/``) is applied into a temp registry and served by the feature
server (the REST app with its ``/ui`` mount) on a loopback port. Two measurements per page:

* ``http``: the shell, its six assets and the page's API calls fetched one after another over one
  keep-alive connection (what a browser with a cold cache asks for, without rendering);
* ``browser``: headless Chromium (Debian's, through Playwright) loading the page until its data is
  on screen (``window.ladle.readyAt``, ms since navigation start).

``--features N`` adds a generated registry of N features (30 per view) to show paging and search
keep pages flat. The issue's budget is 300 ms per page for the commodity repo.

    .venv/bin/python -m bench.ui
    .venv/bin/python -m bench.ui --repeat 21 --features 3000
"""

from __future__ import annotations

import argparse
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from bench.common import emit, summarize

ROOT = Path(__file__).resolve().parent.parent
ASSETS = ["style.css", "app.js", "dom.js", "pages.js", "monitor.js", "lineage.js", "charts.js"]
#: Page → the API calls it makes (after /ui/api/session, which every first load makes).
PAGES: dict[str, tuple[str, list[str]]] = {
    "overview": ("#/", ["overview"]),
    "feature_views": ("#/feature-views", ["objects/feature-views?q=&sort=name&order=asc&offset=0&limit=50"]),
    "features": ("#/features", ["objects/features?q=&sort=name&order=asc&offset=0&limit=50"]),
    "feature_view": ("#/feature-views/commodity_price_features", ["objects/feature-views/commodity_price_features"]),
    "lineage": ("#/lineage", ["lineage"]),
    "jobs": ("#/jobs", ["jobs"]),
    "freshness": ("#/freshness", ["freshness"]),
    "monitoring": ("#/monitoring", ["reports?kind=", "baselines"]),
    "search": ("#/search?q=price", ["search?q=price&limit=200"]),
}
BUDGET_MS = 300


def applied_repo(work: Path, features: int) -> Path:
    """The commodity repo applied in ``work``; with ``features`` > 0, that many generated features more."""
    from click.testing import CliRunner

    from ladle.cli.main import cli

    repo = work / "repo"
    shutil.copytree(ROOT / "feature_repo", repo, ignore=shutil.ignore_patterns("data", "__pycache__"))
    result = CliRunner().invoke(
        cli, ["-c", str(repo), "apply", "--skip-source-validation"], env={"LADLE_DATA_DIR": str(ROOT / "data")}
    )
    if result.exit_code != 0:
        raise RuntimeError(result.output)
    if features:
        from ladle import Entity, FeatureStore, FeatureView, Field, FileSource, Float64, ValueType

        item = Entity(name="bench_item", join_keys=["bench_item_id"], value_type=ValueType.STRING)
        source = FileSource(name="bench_items", path=str(work / "items.parquet"), timestamp_field="event_timestamp")
        views = [
            FeatureView(name=f"bench_view_{v:04d}", entities=[item], source=source,
                        schema=[Field(name=f"b{v:04d}_{i:02d}", dtype=Float64) for i in range(30)])
            for v in range(features // 30)
        ]  # fmt: skip
        store = FeatureStore(repo_path=repo)
        store.apply([item, source, *views], skip_source_validation=True)
        store.close()
    return repo


@contextmanager
def serving(repo: Path) -> Iterator[str]:
    """The feature server over ``repo`` on a loopback port (uvicorn in a thread); yields the /ui/ URL."""
    import uvicorn

    from ladle.server.rest import create_app
    from ladle.store import FeatureStore

    store = FeatureStore(repo_path=repo)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(store), lifespan="off", log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        thread.join(0.05)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/ui/"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
        store.close()


def http_loads(url: str, repeat: int) -> dict[str, Any]:
    """Per page: ms to fetch the shell, the assets, /session and the page's API calls, one after another."""
    out: dict[str, Any] = {}
    with httpx.Client(timeout=30) as client:
        for name, (_, calls) in PAGES.items():
            times = []
            for _ in range(repeat):
                started = time.perf_counter()
                for path in ["", *(f"static/{a}" for a in ASSETS), "api/session", *(f"api/{c}" for c in calls)]:
                    client.get(url + path).raise_for_status()
                times.append((time.perf_counter() - started) * 1000)
            out[name] = summarize(times, 2)
    return out


def browser_loads(url: str, repeat: int) -> dict[str, Any] | str:
    """Per page: ms from navigation start until its data is on screen, in headless Chromium."""
    chromium = shutil.which("chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return "skipped: playwright is not installed"
    if chromium is None:
        return "skipped: no chromium on PATH"
    out: dict[str, Any] = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page()
        for name, (route, _) in PAGES.items():
            times = []
            for _ in range(repeat):
                page.goto("about:blank")
                page.goto(url + route)
                page.wait_for_selector(f'body[data-state="ready"][data-route="{route}"]', state="attached")
                times.append(float(page.evaluate("window.ladle.readyAt")))
            out[name] = summarize(times, 1)
        browser.close()
    return out


def main(argv: list[str] | None = None) -> int:
    """Measure every page and emit one JSON object."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=11, help="loads per page (median reported)")
    parser.add_argument("--features", type=int, default=0, help="generated features to add (0: the commodity repo)")
    parser.add_argument("--no-browser", action="store_true", help="only the HTTP measurement")
    opts = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ladle-bench-ui-") as work:
        repo = applied_repo(Path(work), opts.features)
        with serving(repo) as url:
            http_loads(url, 2)  # warm the registry cache and the plan of each endpoint
            result: dict[str, Any] = {
                "workload": "ui",
                "repeat": opts.repeat,
                "extra_features": opts.features,
                "budget_ms": BUDGET_MS,
                "http_ms": http_loads(url, opts.repeat),
                "browser_ms": "skipped" if opts.no_browser else browser_loads(url, opts.repeat),
            }
    emit(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
