"""The contract as written, with the running mock in ``servers``, and a small index at ``/``."""

from __future__ import annotations

import html
import itertools
import re
from typing import Any

from connexion.middleware.swagger_ui import SwaggerUIMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from flashback_contract.contract import load_spec, spec_path
from flashback_contract.store import Store
from flashback_contract.web import json_text

SERVER_DESCRIPTION = "This mock (the server that served this document)"
# The top-level `servers:` block of the YAML text: the key line and its indented entries.
_SERVERS_BLOCK = re.compile(r"^servers:[ \t]*\n((?:[ \t-].*\n|[ \t]*\n)*)", re.MULTILINE)
_ENTRY_START = re.compile(r"^[ \t]*- ", re.MULTILINE)


def _with_server_yaml(text: str, url: str) -> str:
    """The YAML text with ``url`` as the first server; every other byte as written."""
    entry = f"  - url: {url}\n    description: {SERVER_DESCRIPTION}\n"
    match = _SERVERS_BLOCK.search(text)
    if match is None:
        return f"servers:\n{entry}{text}"
    block = match.group(1)
    starts = [m.start() for m in _ENTRY_START.finditer(block)] + [len(block)]
    entries = [block[a:b] for a, b in itertools.pairwise(starts)]
    # The contract may already name this address (the default one): list it once, first.
    kept = [
        e
        for e in entries
        if not re.match(rf"^[ \t]*- url:\s*['\"]?{re.escape(url)}['\"]?\s*$", e.split("\n", 1)[0])
    ]
    return text[: match.start(1)] + entry + "".join(kept) + text[match.end(1) :]


class ContractDocuments:
    """Serves ``/openapi.yaml``, ``/openapi.json`` and the index ``/`` ahead of connexion's own."""

    def __init__(self, app: ASGIApp, *, store: Store) -> None:
        self.app = app
        self.store = store
        self.text = spec_path().read_text("utf-8")
        self.spec = load_spec()
        self.routes = {
            "/openapi.yaml": self._yaml,
            "/openapi.json": self._json,
            "/": self._index,
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self.routes.get(scope["path"]) if scope["type"] == "http" else None
        if route is None or scope["method"] not in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        base = str(request.base_url).rstrip("/")
        await route(request, base)(scope, receive, send)

    def _yaml(self, _request: Request, base: str) -> Response:
        return Response(_with_server_yaml(self.text, base), media_type="application/yaml")

    def _json(self, _request: Request, base: str) -> Response:
        servers = [{"url": base, "description": SERVER_DESCRIPTION}] + [
            s for s in self.spec.get("servers", []) if s.get("url") != base
        ]
        document = {
            key: (servers if key == "servers" else value) for key, value in self.spec.items()
        }
        if "servers" not in document:
            document = {"servers": servers, **document}
        return Response(json_text(document), media_type="application/json")

    def _index(self, request: Request, base: str) -> Response:
        with self.store.transaction() as uow:
            users = uow.everything().users
        tokens = [
            {"token": token, "user": user.id, "org": user.org_id, "role": user.role.name}
            for user, token in users
            if token
        ]
        links = {
            "Swagger UI": f"{base}/ui/",
            "contract (YAML)": f"{base}/openapi.yaml",
            "contract (JSON)": f"{base}/openapi.json",
            "mock control API": f"{base}/__mock/ui/",
        }
        if "text/html" in request.headers.get("accept", ""):
            return HTMLResponse(_index_html(self.spec, links, tokens))
        index = {"success": True, "message": self.spec["info"]["title"], "links": links}
        return Response(json_text({**index, "tokens": tokens}), media_type="application/json")


def _index_html(spec: dict[str, Any], links: dict[str, str], tokens: list[dict[str, str]]) -> str:
    e = html.escape
    items = "".join(f'<li><a href="{e(url)}">{e(name)}</a></li>' for name, url in links.items())
    rows = "".join(
        f"<tr><td><code>{e(t['token'])}</code></td><td>{e(t['user'])}</td>"
        f"<td>{e(t['org'])}</td><td>{e(t['role'])}</td></tr>"
        for t in tokens
    )
    title = e(spec["info"]["title"])
    return (
        f"<!doctype html><html><head><meta charset=utf-8><title>{title} mock</title></head>"
        f"<body><h1>{title}: the stateful mock</h1><ul>{items}</ul>"
        "<h2>Demo tokens</h2><p>Send <code>Authorization: Bearer TOKEN</code>.</p>"
        f"<table><tr><th>token</th><th>user</th><th>organization</th><th>role</th></tr>{rows}"
        "</table></body></html>\n"
    )


class SwaggerUIOnItsPaths(SwaggerUIMiddleware):  # type: ignore[misc]
    """connexion's Swagger UI middleware, which lets by at once a request it cannot serve.

    connexion sends every request through the UI's router before routing it to an operation: a
    copy of the scope, then each API's mount and each of its routes, matched by regex. The UI
    serves a handful of paths under each API's base path (``openapi.json``, ``openapi.yaml``
    and everything under ``ui``); a path that starts with none of them matches none of its
    routes, not even with a slash added or taken away, and goes straight on. Every other
    request, and any with a root path (behind a proxy, or a session's UI), still meets the
    router, so what the UI serves, redirects and refuses is unchanged.
    """

    def __init__(self, app: ASGIApp) -> None:
        super().__init__(app)
        self.served_prefixes: tuple[str, ...] = ()

    def add_api(self, *args: Any, **kwargs: Any) -> None:
        super().add_api(*args, **kwargs)
        # Each UI route's path under its API's base path, without a trailing slash.
        self.served_prefixes = tuple(
            sorted(
                {
                    (mount.path + route.path).rstrip("/") or "/"
                    for mount in self.router.routes
                    for route in getattr(mount, "routes", [])
                }
            )
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and not scope.get("root_path")
            and not scope["path"].startswith(self.served_prefixes)
        ):
            await self.app(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def serve_swagger_ui_on_its_paths(middlewares: list[Any]) -> None:
    """Put ``SwaggerUIOnItsPaths`` in the place of connexion's middleware in ``middlewares``.

    Done once every middleware is added: connexion finds ``MiddlewarePosition.BEFORE_SWAGGER``
    by this class, so it cannot be replaced earlier.
    """
    at = middlewares.index(SwaggerUIMiddleware)
    middlewares[at] = SwaggerUIOnItsPaths
