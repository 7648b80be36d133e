"""The Swagger UI's router sees only requests it could serve; everything it serves is unchanged."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from connexion.spec import Specification
from starlette.testclient import TestClient

from flashback_contract import Settings, create_app
from flashback_contract.contract import spec_path
from flashback_contract.mock.app import control_spec_path
from flashback_contract.mock.documents import SwaggerUIOnItsPaths

from .conftest import OWNER, bearer


class Recorder:
    def __init__(self) -> None:
        self.scopes: list[dict[str, Any]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.scopes.append(scope)


def ui_middleware() -> tuple[SwaggerUIOnItsPaths, Recorder, Recorder]:
    """The middleware over the mock's two APIs; the next app and the UI's router recorded."""
    following = Recorder()
    middleware = SwaggerUIOnItsPaths(following)
    middleware.add_api(Specification.load(control_spec_path()), base_path="/__mock")
    middleware.add_api(Specification.load(spec_path()), base_path="")
    router = Recorder()
    middleware.router = router  # type: ignore[assignment]
    return middleware, following, router


def call(middleware: SwaggerUIOnItsPaths, path: str, root_path: str = "") -> dict[str, Any]:
    scope = {"type": "http", "method": "GET", "path": path, "root_path": root_path}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request"}

    async def send(message: dict[str, Any]) -> None:
        pass

    asyncio.run(middleware(scope, receive, send))
    return scope


def test_the_ui_serves_the_spec_and_the_ui_under_each_base_path() -> None:
    middleware, _, _ = ui_middleware()
    assert set(middleware.served_prefixes) == {
        "/openapi.json",
        "/openapi.yaml",
        "/ui",
        "/ui/index.html",
        "/__mock/openapi.json",
        "/__mock/openapi.yaml",
        "/__mock/ui",
        "/__mock/ui/index.html",
    }


@pytest.mark.parametrize(
    "path", ["/organization/org-acme/key", "/repo/r/ai/apikey", "/__mock/state", "/", "/u"]
)
def test_a_path_the_ui_cannot_serve_goes_on_without_its_router(path: str) -> None:
    middleware, following, router = ui_middleware()
    scope = call(middleware, path)
    assert router.scopes == []
    assert following.scopes == [scope]


@pytest.mark.parametrize(
    "path",
    ["/ui", "/ui/", "/ui/swagger-ui.css", "/openapi.json", "/openapi.json/", "/__mock/ui/"],
)
def test_a_path_the_ui_may_serve_meets_its_router(path: str) -> None:
    middleware, following, router = ui_middleware()
    call(middleware, path)
    assert [scope["path"] for scope in router.scopes] == [path]
    assert following.scopes == []


def test_a_request_with_a_root_path_meets_the_router_whatever_its_path() -> None:
    middleware, following, router = ui_middleware()
    call(middleware, "/organization/org-acme/key", root_path="/behind/a/proxy")
    assert len(router.scopes) == 1
    assert following.scopes == []


def test_the_mock_uses_it_in_place_of_connexions() -> None:
    app = create_app(Settings(store_url="memory://"))
    assert SwaggerUIOnItsPaths in app.middleware.middlewares


@pytest.mark.parametrize(
    ("path", "status", "media_type"),
    [
        ("/ui/", 200, "text/html"),
        ("/ui", 307, None),
        ("/ui/swagger-ui.css", 200, "text/css"),
        ("/openapi.json", 200, "application/json"),
        ("/__mock/ui/", 200, "text/html"),
        ("/__mock/openapi.yaml", 200, "text/yaml"),
        ("/__session/w1/ui/", 200, "text/html"),
        ("/organization/org-acme/key", 200, "application/json"),
        ("/uix", 404, "application/json"),
    ],
)
def test_what_the_mock_serves_around_the_ui(path: str, status: int, media_type: str | None) -> None:
    with TestClient(create_app(Settings(store_url="memory://"))) as client:
        response = client.get(path, headers=bearer(OWNER), follow_redirects=False)
    assert response.status_code == status
    if media_type:
        assert response.headers["content-type"].startswith(media_type)
    if status == 404:
        assert response.json()["success"] is False
