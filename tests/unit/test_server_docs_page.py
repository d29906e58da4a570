"""``/docs`` works offline: the page references only local URLs, each served from the package."""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from ladle import FeatureStore
from ladle.server.rest import create_app
from unit.server_repo import build_repo

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*httpx2")
    from starlette.testclient import TestClient


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    path = tmp_path_factory.mktemp("docs_repo")
    build_repo(path).store.close()
    store = FeatureStore(repo_path=path)
    with TestClient(create_app(store)) as c:
        yield c
    store.close()


def test_the_page_references_only_local_urls_and_each_is_served(client: TestClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    urls = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert len(urls) >= 3, page.text
    assert not [u for u in urls if "//" in u or not u.startswith("/")], urls
    expected = {".css": "text/css", ".js": "text/javascript"}
    for url in urls:
        asset = client.get(url)
        assert asset.status_code == 200, url
        assert asset.headers["content-type"].startswith(expected[Path(url).suffix]), url
        assert int(asset.headers["content-length"]) == len(asset.content) > 0
    assert b"SwaggerUIBundle" in client.get("/docs/swagger-ui-bundle.js").content
    assert 'data-url="/openapi.json"' in page.text
    assert "root.dataset.url" in client.get("/docs/swagger-initializer.js").text


def test_the_swagger_ui_can_render_openapi_3_1(client: TestClient) -> None:
    # Swagger UI 4 shows "Unable to render this definition" for 3.1 documents; 5.x renders them.
    version = (Path(__file__).parents[2] / "src/ladle/server/static/swagger-ui/VERSION").read_text().strip()
    assert int(version.split(".")[0]) >= 5
    assert client.get("/openapi.json").json()["openapi"].startswith("3.1")
    assert "Apache License" in client.get("/docs/LICENSE").text


def test_no_other_file_is_reachable(client: TestClient) -> None:
    for path in ("/docs/VERSION", "/docs/../rest.py", "/docs/swagger-ui.js", "/docs/NOTICE/x"):
        assert client.get(path).status_code == 404, path
    assert client.post("/docs/swagger-ui.css").status_code == 405
